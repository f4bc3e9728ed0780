// Beyond the eight scenarios: reconnection, TLS, retries, deadlines, the transfer
// queue and cancellation through the context, each against a real server.

package courier_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	courier "github.com/courier-rtm/courier/client/go"
	"github.com/courier-rtm/courier/client/go/internal/testkit"
)

func TestSubscribeReconnectsAfterAServerRestart(t *testing.T) {
	server := testkit.Start(t)
	bob := dial(t, server, "bob")
	feed := subscribe(t, bob)
	server.Restart(t)
	// The feed says it dropped, reconnects by itself, says so, and is ready again.
	var seen []string
	for len(seen) < 10 {
		switch event := nextEvent(t, feed).(type) {
		case courier.Disconnected:
			if event.Err == nil {
				t.Fatal("a Disconnected event without a reason")
			}
			seen = append(seen, "disconnected")
		case courier.Reconnected:
			seen = append(seen, "reconnected")
		case courier.Ready:
			seen = append(seen, "ready")
		default:
			t.Fatalf("unexpected %#v", event)
		}
		if seen[len(seen)-1] == "ready" {
			break
		}
	}
	if len(seen) < 3 || seen[0] != "disconnected" || seen[len(seen)-2] != "reconnected" || seen[len(seen)-1] != "ready" {
		t.Fatalf("events %v", seen)
	}
	alice := dial(t, server, "alice")
	sent, err := alice.SendPeerMessage(context.Background(), "bob", courier.Text("after the restart"), courier.SendOptions{})
	if err != nil {
		t.Fatalf("bob is not online again: %v", err)
	}
	if got := nextMessage(t, feed); got.MessageID != sent.MessageID {
		t.Fatalf("got %+v", got)
	}
}

func TestSubscribeEndsWhenTheServerRefusesTheCaller(t *testing.T) {
	server := testkit.Start(t)
	forged, err := courier.Dial(context.Background(), server.URL(), courier.WithToken("not-a-token"))
	if err != nil {
		t.Fatal(err)
	}
	defer forged.Close()
	feed := forged.Subscribe(context.Background())
	defer feed.Close()
	select {
	case event, open := <-feed.Events():
		if open {
			t.Fatalf("an event for a forged token: %#v", event)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the feed did not end")
	}
	expectKind(t, feed.Err(), courier.ErrUnauthenticated)
}

func TestHTTPSURLsSpeakTLS(t *testing.T) {
	// The test server speaks plaintext HTTP/2 only: with https:// the client's TLS
	// handshake meets a plaintext answer.
	server := testkit.Start(t)
	url := strings.Replace(server.URL(), "http://", "https://", 1)
	client, err := courier.Dial(context.Background(), url, courier.WithToken(testkit.Token("alice")),
		courier.WithRetries(1, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	err = client.JoinChannel(context.Background(), "c")
	e := expectKind(t, err, courier.ErrUnavailable)
	t.Logf("over https: %v", e)
	if !strings.Contains(e.Message, "tls") {
		t.Fatalf("no TLS handshake happened: %v", e)
	}
	// The same client over http:// works.
	if err := dial(t, server, "alice").JoinChannel(context.Background(), "c"); err != nil {
		t.Fatal(err)
	}
}

func TestCallsRetryUntilTheServerIsUp(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := listener.Addr().String()
	listener.Close()
	client, err := courier.Dial(context.Background(), "http://"+addr, courier.WithToken(testkit.Token("alice")),
		courier.WithRetries(40, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	joined := make(chan error, 1)
	go func() { joined <- client.JoinChannel(context.Background(), "up") }()
	select {
	case err := <-joined:
		t.Fatalf("finished while nothing listens: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	server := testkit.StartAt(t, addr)
	select {
	case err := <-joined:
		if err != nil {
			t.Fatalf("the retried join failed: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the join did not finish once the server was up")
	}
	members, err := client.ChannelMembers(context.Background(), "up")
	if err != nil || len(members) != 1 || members[0] != "alice" {
		t.Fatalf("members %v, %v", members, err)
	}
	server.Stop()
	// Nothing listens any more: calls that are safe to retry give up with Unavailable.
	gone, err := courier.Dial(context.Background(), "http://"+addr, courier.WithToken(testkit.Token("alice")),
		courier.WithRetries(2, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer gone.Close()
	_, err = gone.ChannelMembers(context.Background(), "up")
	expectKind(t, err, courier.ErrUnavailable)
}

func TestUnaryCallsHaveADeadline(t *testing.T) {
	server := testkit.Start(t)
	hasty := dial(t, server, "alice", courier.WithDeadline(time.Microsecond))
	_, err := hasty.SendPeerMessage(context.Background(), "bob", courier.Text("hi"), courier.SendOptions{Offline: true})
	expectKind(t, err, courier.ErrDeadlineExceeded)
}

func TestTheTransferQueueWaitsForASlot(t *testing.T) {
	server := testkit.Start(t)
	alice := dial(t, server, "alice", courier.WithMaxTransfers(1), courier.WithTransferQueue())
	ctx := context.Background()
	source, feed := io.Pipe()
	defer feed.Close()
	first, err := alice.StartUpload(ctx, source, 10, courier.UploadOptions{FileName: "held"})
	if err != nil {
		t.Fatal(err)
	}
	// A queued transfer gives up when its context does.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = alice.StartUpload(short, bytes.NewReader([]byte("x")), 1, courier.UploadOptions{FileName: "x"})
	expectKind(t, err, courier.ErrDeadlineExceeded)
	second := make(chan error, 1)
	go func() {
		_, err := alice.Upload(ctx, bytes.NewReader([]byte("queued")), 6, courier.UploadOptions{FileName: "queued"})
		second <- err
	}()
	select {
	case err := <-second:
		t.Fatalf("the second upload ran while the first held the only slot: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	first.Cancel()
	if _, err := first.Wait(); !errors.Is(err, courier.ErrCancelled) {
		t.Fatalf("first: %v", err)
	}
	select {
	case err := <-second:
		if err != nil {
			t.Fatalf("the queued upload failed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the queued upload did not run once the slot was free")
	}
}

func TestCancellingTheContextCancelsTheTransfer(t *testing.T) {
	server := testkit.Start(t)
	alice := dial(t, server, "alice")
	ctx, cancel := context.WithCancel(context.Background())
	source, feed := io.Pipe()
	defer feed.Close()
	upload, err := alice.StartUpload(ctx, source, 1000, courier.UploadOptions{FileName: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	server.WaitInFlight(t, 1)
	cancel()
	_, err = upload.Wait()
	expectKind(t, err, courier.ErrCancelled)
	expectKind(t, alice.Cancel(upload.RequestID()), courier.ErrNoSuchTransfer)
	server.WaitInFlight(t, 0)
	server.WaitStoredEmpty(t)
}

func TestLocalInputIsCheckedFirst(t *testing.T) {
	server := testkit.Start(t)
	alice := dial(t, server, "alice")
	ctx := context.Background()
	_, err := alice.UploadFile(ctx, t.TempDir()+"/missing.png", courier.UploadOptions{})
	expectKind(t, err, courier.ErrInvalidArgument)
	_, err = alice.Upload(ctx, strings.NewReader("short"), 10, courier.UploadOptions{FileName: "short"})
	expectKind(t, err, courier.ErrInvalidArgument)
	server.WaitStoredEmpty(t)
	_, err = courier.Dial(ctx, "ftp://example.com", courier.WithToken("t"))
	expectKind(t, err, courier.ErrInvalidArgument)
	_, err = courier.Dial(ctx, server.URL())
	expectKind(t, err, courier.ErrUnauthenticated)
}

func TestDownloadToAWriterResumesFromAnOffset(t *testing.T) {
	server := testkit.Start(t)
	alice := dial(t, server, "alice")
	ctx := context.Background()
	data := testkit.Pattern(1000, 11)
	media, err := alice.Upload(ctx, bytes.NewReader(data), 1000, courier.UploadOptions{FileName: "d.bin"})
	if err != nil {
		t.Fatal(err)
	}
	var rest bytes.Buffer
	var last courier.Progress
	if _, err := alice.Download(ctx, media.MediaID, &rest, courier.DownloadOptions{
		Offset: 300, OnProgress: func(p courier.Progress) { last = p },
	}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rest.Bytes(), data[300:]) || last != (courier.Progress{Done: 1000, Total: 1000}) {
		t.Fatalf("got %d bytes, progress %+v", rest.Len(), last)
	}
	_, err = alice.Download(ctx, media.MediaID, io.Discard, courier.DownloadOptions{Offset: 1001})
	expectKind(t, err, courier.ErrOutOfRange)
}

func TestABrokenDownloadKeepsItsPartialFileAndResumes(t *testing.T) {
	server := testkit.Start(t)
	alice := dial(t, server, "alice")
	ctx := context.Background()
	big := testkit.Pattern(30*mib, 12)
	media, err := alice.Upload(ctx, bytes.NewReader(big), int64(len(big)), courier.UploadOptions{FileName: "big.bin"})
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "big.bin")
	partial := courier.PartialPath(target, media.MediaID)
	// The first report with data holds the download while the server dies.
	moved, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	download, err := alice.StartDownloadFile(ctx, media.MediaID, target, courier.DownloadOptions{
		OnProgress: func(p courier.Progress) {
			if p.Done > 0 {
				once.Do(func() { close(moved); <-release })
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	within(t, moved, "the first downloaded bytes")
	server.Restart(t)
	close(release)
	_, err = download.Wait()
	expectKind(t, err, courier.ErrUnavailable)
	info, err := os.Stat(partial)
	if err != nil || info.Size() == 0 || info.Size() >= 30*mib {
		t.Fatalf("the partial file after a broken connection: %v, %v", info, err)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the target exists after a broken download: %v", err)
	}
	before := server.Metric(t, "courier_download_bytes_total")
	if _, err := alice.DownloadFile(ctx, media.MediaID, target, courier.DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	if sent := server.Metric(t, "courier_download_bytes_total") - before; sent != 30*mib-info.Size() {
		t.Fatalf("the server sent %d bytes, expected %d", sent, 30*mib-info.Size())
	}
	expectFile(t, target, big)
	if _, err := os.Stat(partial); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the partial file remains: %v", err)
	}
}

func TestDialReplicasChecksItsURLs(t *testing.T) {
	ctx := context.Background()
	token := courier.WithToken(testkit.Token("alice"))
	for _, urls := range [][]string{
		nil,
		{"http://127.0.0.1:1", "https://127.0.0.1:2"},
		{"http://127.0.0.1:1", "ftp://127.0.0.1:2"},
		{"http://127.0.0.1:1", "127.0.0.1:2"},
	} {
		if _, err := courier.DialReplicas(ctx, urls, token); !errors.Is(err, courier.ErrInvalidArgument) {
			t.Errorf("%q: %v", urls, err)
		}
	}
	// https:// replicas speak TLS to each (here plaintext servers: the handshake fails).
	a, b := testkit.Start(t), testkit.Start(t)
	urls := []string{strings.Replace(a.URL(), "http://", "https://", 1), strings.Replace(b.URL(), "http://", "https://", 1)}
	client, err := courier.DialReplicas(ctx, urls, token, courier.WithRetries(1, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	e := expectKind(t, client.JoinChannel(ctx, "c"), courier.ErrUnavailable)
	if !strings.Contains(e.Message, "tls") {
		t.Fatalf("no TLS handshake happened: %v", e)
	}
}

func TestReplicasOverTLSCheckEachCertificateAgainstItsHost(t *testing.T) {
	bin, err := testkit.Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if out, err := exec.Command(bin, "tls-dev", "--out", dir).CombinedOutput(); err != nil {
		t.Fatalf("tls-dev: %v\n%s", err, out)
	}
	flags := []string{"--tls-cert", filepath.Join(dir, "server.pem"), "--tls-key", filepath.Join(dir, "server.key")}
	a, b := testkit.Start(t, flags...), testkit.Start(t, flags...)
	ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	// The certificate names localhost and 127.0.0.1: one replica by each.
	_, port, _ := net.SplitHostPort(b.Addr)
	urls := []string{"https://" + a.Addr, "https://localhost:" + port}
	client, err := courier.DialReplicas(context.Background(), urls, courier.WithToken(testkit.Token("alice")),
		courier.WithTLSConfig(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	const query = `method="QueryPeersOnlineStatus"`
	for i := range 10 {
		if _, err := client.QueryOnlineStatus(context.Background(), "bob"); err != nil {
			t.Fatalf("call %d over TLS: %v", i+1, err)
		}
	}
	for _, server := range []*testkit.Server{a, b} {
		if server.MetricSum(t, "courier_grpc_requests_total", query) == 0 {
			t.Fatalf("%s answered none of the calls", server.Addr)
		}
	}
}
