// The send methods' own check of a message, made before any call: these clients point
// at a port where nothing listens, so a message that got past the check would fail
// with ErrUnavailable instead.

package courier_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	courier "github.com/courier-rtm/courier/client/go"
)

// unconnected is a client of a server that is not there, retrying nothing.
func unconnected(t *testing.T) *courier.Client {
	t.Helper()
	client, err := courier.Dial(context.Background(), "http://127.0.0.1:1",
		courier.WithToken("any-token"), courier.WithRetries(0, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

func TestEmptyMessagesAreRefusedBeforeAnyCall(t *testing.T) {
	client := unconnected(t)
	ctx := context.Background()
	for _, message := range []courier.Message{
		courier.Text(""),
		courier.TextMessage{},
		courier.RawMessage{Description: "nothing"},
		courier.RawMessage{Payload: []byte{}},
	} {
		sends := map[string]func() error{
			"SendPeerMessage": func() error {
				_, err := client.SendPeerMessage(ctx, "bob", message, courier.SendOptions{Offline: true})
				return err
			},
			"SendChannelMessage": func() error {
				_, err := client.SendChannelMessage(ctx, "lobby", message)
				return err
			},
		}
		for name, send := range sends {
			e := expectKind(t, send(), courier.ErrInvalidArgument)
			if e.Code != codes.InvalidArgument || e.Reason != "" || !strings.Contains(e.Message, "cannot be sent") {
				t.Errorf("%s of %#v: code %v, reason %q, message %q", name, message, e.Code, e.Reason, e.Message)
			}
		}
	}
	// What is not empty goes on to the call (which finds no server).
	for _, message := range []courier.Message{courier.Text(" "), courier.RawMessage{Payload: []byte{0}}} {
		_, err := client.SendPeerMessage(ctx, "bob", message, courier.SendOptions{})
		expectKind(t, err, courier.ErrUnavailable)
		_, err = client.SendChannelMessage(ctx, "lobby", message)
		expectKind(t, err, courier.ErrUnavailable)
	}
}
