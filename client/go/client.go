// The connection to a courier server or to several replicas of one (calls spread
// round robin): the token on every call, a deadline on unary calls, and retries with
// backoff where a call is safe to repeat.

package courier

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/courier-rtm/courier/client/go/internal/pb"
)

// maxBackoff is the longest pause between retries and between reconnections.
const maxBackoff = 5 * time.Second

// options are what Dial's Options set; the defaults suit most applications.
type options struct {
	// token is the caller's JWT, sent as `authorization: Bearer <token>`.
	token string
	// deadline bounds each unary call.
	deadline time.Duration
	// retries is how often a call that is safe to repeat is retried while the server
	// is unavailable.
	retries int
	// backoff is the first pause before a retry or reconnection; it doubles each time.
	backoff time.Duration
	// maxTransfers is the most uploads and downloads this client runs at once.
	maxTransfers int
	// queueTransfers makes a transfer past the cap wait for a slot instead of failing.
	queueTransfers bool
	// chunkSize is the size of an upload's data frames.
	chunkSize int
	// tlsConfig replaces the default TLS settings of https:// URLs.
	tlsConfig *tls.Config
}

// Option configures a Client in Dial.
type Option func(*options)

// WithToken sets the caller's token (`courier-server token --user NAME` mints one).
func WithToken(token string) Option { return func(o *options) { o.token = strings.TrimSpace(token) } }

// WithDeadline sets the deadline of each unary call (10 s by default). A context
// with an earlier deadline wins.
func WithDeadline(d time.Duration) Option { return func(o *options) { o.deadline = d } }

// WithRetries sets how many times a call that is safe to repeat (joins, leaves,
// queries, GetMedia) is retried while the server is unavailable (4 by default), and
// the first pause, which doubles up to 5 s (100 ms by default).
func WithRetries(retries int, backoff time.Duration) Option {
	return func(o *options) { o.retries, o.backoff = retries, backoff }
}

// WithMaxTransfers sets the most uploads and downloads that run at once (9 by
// default, as many as the server allows per user).
func WithMaxTransfers(n int) Option { return func(o *options) { o.maxTransfers = n } }

// WithTransferQueue makes a transfer started while the client already runs the most
// it may wait for a free slot (as long as its context allows) instead of failing at
// once with ErrTooManyTransfers.
func WithTransferQueue() Option { return func(o *options) { o.queueTransfers = true } }

// WithChunkSize sets the size of an upload's data frames (256 KiB by default; keep it
// between 64 KiB and 1 MiB).
func WithChunkSize(n int) Option { return func(o *options) { o.chunkSize = n } }

// WithTLSConfig sets the TLS settings of an https:// URL (by default the system's
// roots and the URL's host name).
func WithTLSConfig(config *tls.Config) Option { return func(o *options) { o.tlsConfig = config } }

// Client is a connection to a courier server as one user. It is safe for concurrent
// use; Close it when done.
type Client struct {
	// conn is the HTTP/2 connection, which reconnects by itself.
	conn *grpc.ClientConn
	// media and messaging are the generated stubs on conn.
	media     pb.MediaServiceClient
	messaging pb.MessagingServiceClient
	// transfers holds the running uploads and downloads and their cap.
	transfers *transferTable
	// opts are the settings Dial was given.
	opts options
	// serverURL is the URL Dial was given (DialReplicas': its URLs joined by commas),
	// as resumable uploads record it.
	serverURL string
}

// Dial makes a client for the server at serverURL (`http://host:port`, or
// `https://host:port` for TLS) acting as the user of the token given WithToken. It
// does not wait for the server: the connection is made on the first call, and calls
// that are safe to repeat are retried while the server is unavailable. Every call
// goes to one server (the first address the host name resolves to that answers); for
// several replicas, use DialReplicas. ctx is not used after Dial returns.
func Dial(ctx context.Context, serverURL string, opts ...Option) (*Client, error) {
	return dial(ctx, []string{serverURL}, false, opts)
}

// DialReplicas makes a client for several replicas of one courier service (servers
// that share a bus with --bus and one media store), one URL each, all http:// or all
// https://. Calls are spread over the replicas that are up, round robin, call by
// call; a call that is safe to repeat and fails because its replica went away is
// retried on another; a subscription whose replica dies reconnects through another
// and resumes after its last cursor. One URL whose host name resolves to several
// addresses (a Kubernetes headless Service) is spread over all of them. Otherwise it
// is Dial.
//
// A replica that goes away is reconnected to at once and then with backoff, skipped
// meanwhile; while every replica is down, calls fail at once with ErrUnavailable
// (calls that are safe to repeat after their retries).
func DialReplicas(ctx context.Context, serverURLs []string, opts ...Option) (*Client, error) {
	return dial(ctx, serverURLs, true, opts)
}

// dial makes the client of Dial (one server, gRPC's pick_first, which reconnects when
// the next call comes) or of DialReplicas (balance: round_robin over every address).
func dial(ctx context.Context, serverURLs []string, balance bool, opts []Option) (*Client, error) {
	o := options{
		deadline:     10 * time.Second,
		retries:      4,
		backoff:      100 * time.Millisecond,
		maxTransfers: 9,
		chunkSize:    256 * 1024,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if err := ctx.Err(); err != nil {
		return nil, contextError(ctx)
	}
	if o.token == "" {
		return nil, newError(ErrUnauthenticated, codes.Unauthenticated,
			"no token: pass courier.WithToken (courier-server token --user NAME mints one)")
	}
	for _, c := range o.token {
		if c < 0x21 || c > 0x7e {
			return nil, newError(ErrUnauthenticated, codes.Unauthenticated,
				"the token holds characters a header cannot carry")
		}
	}
	target, resolve, transport, err := replicaTarget(serverURLs, o.tlsConfig)
	if err != nil {
		return nil, err
	}
	dialOptions := []grpc.DialOption{
		grpc.WithTransportCredentials(transport),
		grpc.WithPerRPCCredentials(bearer{token: o.token}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(8 * 1024 * 1024)),
		grpc.WithInitialWindowSize(4 * 1024 * 1024),
		grpc.WithInitialConnWindowSize(8 * 1024 * 1024),
		// Reconnect as the subscription does: from 100 ms, up to 5 s apart (gRPC's
		// default waits up to 2 minutes).
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: maxBackoff},
			MinConnectTimeout: o.deadline,
		}),
	}
	if balance {
		// gRPC pins a connection to one server; round_robin keeps one to every
		// address and picks the next ready one for each call, skipping those down.
		dialOptions = append(dialOptions,
			grpc.WithDefaultServiceConfig(`{"loadBalancingConfig": [{"round_robin": {}}]}`))
	}
	if resolve != nil {
		dialOptions = append(dialOptions, grpc.WithResolvers(resolve))
	}
	conn, err := grpc.NewClient(target, dialOptions...)
	if err != nil {
		return nil, invalidArgument(err, "server URL %q: %v", strings.Join(serverURLs, ","), err)
	}
	return &Client{
		conn:      conn,
		media:     pb.NewMediaServiceClient(conn),
		messaging: pb.NewMessagingServiceClient(conn),
		transfers: newTransferTable(o.maxTransfers, o.queueTransfers),
		opts:      o,
		serverURL: strings.Join(serverURLs, ","),
	}, nil
}

// replicaTarget is the gRPC target of serverURLs and its transport credentials: for
// one URL its host and port, resolved by DNS (with round_robin, every address of the
// name is used); for several, a static resolver (returned, for this connection
// alone) that lists each replica's address.
func replicaTarget(serverURLs []string, tlsConfig *tls.Config) (string, resolver.Builder, credentials.TransportCredentials, error) {
	if len(serverURLs) == 0 {
		return "", nil, nil, invalidArgument(nil, "no server URL given")
	}
	if len(serverURLs) == 1 {
		target, transport, err := parseURL(serverURLs[0], tlsConfig)
		return target, nil, transport, err
	}
	var addresses []resolver.Address
	var transport credentials.TransportCredentials
	scheme := ""
	for _, serverURL := range serverURLs {
		target, _, err := parseURL(serverURL, tlsConfig)
		if err != nil {
			return "", nil, nil, err
		}
		u, _ := url.Parse(serverURL) // parseURL has checked it
		if scheme == "" {
			scheme = u.Scheme
		} else if u.Scheme != scheme {
			return "", nil, nil, invalidArgument(nil, "server URLs %q: all http:// or all https://", serverURLs)
		}
		// ServerName is the authority of this replica's connection, and so the name
		// its TLS certificate is checked against.
		addresses = append(addresses, resolver.Address{Addr: target, ServerName: target})
	}
	if scheme == "https" {
		// No ServerName here: each connection takes its address's.
		config := &tls.Config{MinVersion: tls.VersionTLS12}
		if tlsConfig != nil {
			config = tlsConfig.Clone()
		}
		transport = credentials.NewTLS(config)
	} else {
		transport = insecure.NewCredentials()
	}
	static := manual.NewBuilderWithScheme("courier-replicas")
	static.InitialState(resolver.State{Addresses: addresses})
	return static.Scheme() + ":///replicas", static, transport, nil
}

// Close closes the connection; running transfers and subscriptions fail.
func (c *Client) Close() error { return c.conn.Close() }

// parseURL turns `http://host:port` or `https://host:port` into a gRPC target and
// the transport credentials the scheme asks for.
func parseURL(serverURL string, tlsConfig *tls.Config) (string, credentials.TransportCredentials, error) {
	u, err := url.Parse(serverURL)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return "", nil, invalidArgument(err, "server URL %q: expected http://host:port or https://host:port", serverURL)
	}
	port := u.Port()
	switch u.Scheme {
	case "http":
		if port == "" {
			port = "80"
		}
		return net.JoinHostPort(u.Hostname(), port), insecure.NewCredentials(), nil
	case "https":
		if port == "" {
			port = "443"
		}
		config := &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
		if tlsConfig != nil {
			config = tlsConfig.Clone()
		}
		return net.JoinHostPort(u.Hostname(), port), credentials.NewTLS(config), nil
	default:
		return "", nil, invalidArgument(nil, "server URL %q: the scheme must be http or https", serverURL)
	}
}

// bearer puts the token on every call.
type bearer struct {
	// token is the JWT.
	token string
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity is false: the token travels over plaintext too, since a
// server on the same host or behind a TLS-terminating proxy is the common case.
func (b bearer) RequireTransportSecurity() bool { return false }

// unary runs one unary call with the client's deadline (or the context's, if
// earlier) and turns its error into an *Error.
func unary[T any](c *Client, ctx context.Context, call func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.deadline)
	defer cancel()
	result, err := call(ctx)
	return result, fromStatus(ctx, err)
}

// retrying runs a unary call that is safe to repeat, again with backoff while it
// fails with ErrUnavailable, at most opts.retries more times.
func retrying[T any](c *Client, ctx context.Context, call func(context.Context) (T, error)) (T, error) {
	pause := c.opts.backoff
	for attempt := 0; ; attempt++ {
		result, err := unary(c, ctx, call)
		if err == nil || !errors.Is(err, ErrUnavailable) || attempt >= c.opts.retries {
			return result, err
		}
		timer := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			timer.Stop()
			return result, contextError(ctx)
		case <-timer.C:
		}
		pause = min(pause*2, maxBackoff)
	}
}
