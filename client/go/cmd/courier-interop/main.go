// Command courier-interop is the Go client's interop client (docs/interop.md): the
// commands of `courier --json`, printing one JSON object per line on stdout, built on
// the courier package. The server and token come from COURIER_SERVER and
// COURIER_TOKEN (or --server and --token).
//
// Exit status: 0 on success; 1 for a refused or failed call, with an
// {"error": {"code", "reason", "message"}} line on stdout (and a line on stderr), or
// for a peer message that was neither delivered nor kept; 2 for a usage error; 130
// when a transfer was cancelled by Ctrl-C.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	courier "github.com/courier-rtm/courier/client/go"
)

const usage = `usage: courier-interop COMMAND [ARGS]
  upload PATH [--image] [--resume [--stop-after-parts N]]
  send (--to PEER | --channel CH) (--text T | --image PATH | --file PATH | --media-id ID) [--offline] [--client-message-id ID]
  join CH | leave CH | members CH | online USER...
  download MEDIA_ID -o PATH
  thumbnail MEDIA_ID [--max-edge N] -o PATH
  delete MEDIA_ID
  url MEDIA_ID [--max-edge N] [--ttl DURATION]
  listen [--after CURSOR] [--save DIR] [--count N]
every command also takes --server URL and --token TOKEN (default: $COURIER_SERVER, $COURIER_TOKEN)`

// errUnreachable marks a peer send that was neither delivered nor kept: its line is
// printed already, the exit status is 1.
var errUnreachable = errors.New("peer unreachable")

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(os.Stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := command(ctx, args[0], args[1:])
	var usageErr usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &usageErr):
		fmt.Fprintf(os.Stderr, "courier-interop: %v\n%s\n", err, usage)
		return 2
	case errors.Is(err, errUnreachable):
		return 1
	case errors.Is(err, courier.ErrCancelled) && ctx.Err() != nil:
		fmt.Fprintln(os.Stderr, "courier-interop: cancelled")
		return 130
	default:
		printError(err)
		fmt.Fprintf(os.Stderr, "courier-interop: %v\n", err)
		return 1
	}
}

// specs are the flags of each command.
var specs = map[string]spec{
	"upload":    {values: []string{"stop-after-parts"}, bools: []string{"image", "resume"}},
	"send":      {values: []string{"to", "channel", "text", "image", "file", "media-id", "client-message-id"}, bools: []string{"offline"}},
	"join":      {},
	"leave":     {},
	"members":   {},
	"online":    {},
	"download":  {values: []string{"output"}, aliases: map[string]string{"o": "output"}},
	"listen":    {values: []string{"save", "count", "after"}},
	"thumbnail": {values: []string{"output", "max-edge"}, aliases: map[string]string{"o": "output"}},
	"delete":    {},
	"url":       {values: []string{"max-edge", "ttl"}},
}

// command parses the command line of name, connects, and runs it.
func command(ctx context.Context, name string, args []string) error {
	s, known := specs[name]
	if !known {
		return usagef("unknown command %q", name)
	}
	p, err := parse(args, s)
	if err != nil {
		return err
	}
	run, err := prepare(name, p)
	if err != nil {
		return err
	}
	server := os.Getenv("COURIER_SERVER")
	if p.has("server") {
		server = p.flags["server"]
	}
	if server == "" {
		server = "http://127.0.0.1:50051"
	}
	token := os.Getenv("COURIER_TOKEN")
	if p.has("token") {
		token = p.flags["token"]
	}
	client, err := courier.Dial(ctx, server, courier.WithToken(token))
	if err != nil {
		return err
	}
	defer client.Close()
	return run(ctx, client)
}

// prepare checks the arguments of a command (usage errors come before any call) and
// returns what runs it.
func prepare(name string, p parsed) (func(context.Context, *courier.Client) error, error) {
	switch name {
	case "upload":
		if err := p.exactly("PATH"); err != nil {
			return nil, err
		}
		if p.has("resume") || p.has("stop-after-parts") {
			return prepareResumable(p)
		}
		return func(ctx context.Context, c *courier.Client) error {
			media, err := upload(ctx, c, p.positional[0], p.has("image"))
			if err == nil {
				printLine(mediaJSON(media))
			}
			return err
		}, nil
	case "send":
		return prepareSend(p)
	case "join", "leave", "members":
		if err := p.exactly("CHANNEL"); err != nil {
			return nil, err
		}
		channel := p.positional[0]
		return func(ctx context.Context, c *courier.Client) error {
			return channelCommand(ctx, c, name, channel)
		}, nil
	case "online":
		if len(p.positional) == 0 {
			return nil, usagef("missing USER")
		}
		return func(ctx context.Context, c *courier.Client) error {
			statuses, err := c.QueryOnlineStatus(ctx, p.positional...)
			for _, s := range statuses {
				printLine(object{"user_id": s.UserID, "online": s.Online})
			}
			return err
		}, nil
	case "download":
		if err := p.exactly("MEDIA_ID"); err != nil {
			return nil, err
		}
		if !p.has("output") {
			return nil, usagef("missing -o PATH")
		}
		return func(ctx context.Context, c *courier.Client) error {
			return download(ctx, c, p.positional[0], p.flags["output"])
		}, nil
	case "thumbnail":
		if err := p.exactly("MEDIA_ID"); err != nil {
			return nil, err
		}
		if !p.has("output") {
			return nil, usagef("missing -o PATH")
		}
		maxEdge := 320
		if p.has("max-edge") {
			n, err := p.count("max-edge")
			if err != nil {
				return nil, err
			}
			if n < 1 {
				return nil, usagef("--max-edge needs a number of pixels of at least 1")
			}
			maxEdge = n
		}
		return func(ctx context.Context, c *courier.Client) error {
			return thumbnail(ctx, c, p.positional[0], maxEdge, p.flags["output"])
		}, nil
	case "delete":
		if err := p.exactly("MEDIA_ID"); err != nil {
			return nil, err
		}
		return func(ctx context.Context, c *courier.Client) error {
			if err := c.DeleteMedia(ctx, p.positional[0]); err != nil {
				return err
			}
			printLine(object{"media_id": p.positional[0], "deleted": true})
			return nil
		}, nil
	case "url":
		return prepareURL(p)
	case "listen":
		if err := p.exactly(); err != nil {
			return nil, err
		}
		count, err := p.count("count")
		if err != nil {
			return nil, err
		}
		var after uint64
		if p.has("after") {
			after, err = strconv.ParseUint(p.flags["after"], 10, 64)
			if err != nil {
				return nil, usagef("--after needs a cursor (a whole number), not %q", p.flags["after"])
			}
		}
		return func(ctx context.Context, c *courier.Client) error {
			return listen(ctx, c, p.flags["save"], count, after)
		}, nil
	}
	return nil, usagef("unknown command %q", name)
}
