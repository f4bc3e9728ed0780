// Helpers of the tests: clients of a test server and waiting on subscriptions, every
// wait bounded in time.

package courier_test

import (
	"context"
	"errors"
	"testing"
	"time"

	courier "github.com/courier-rtm/courier/client/go"
	"github.com/courier-rtm/courier/client/go/internal/testkit"
)

const mib = 1024 * 1024

// dial is a client of server acting as user, closed when the test ends.
func dial(t *testing.T, server *testkit.Server, user string, opts ...courier.Option) *courier.Client {
	t.Helper()
	opts = append([]courier.Option{courier.WithToken(testkit.Token(user))}, opts...)
	client, err := courier.Dial(context.Background(), server.URL(), opts...)
	if err != nil {
		t.Fatalf("dial as %s: %v", user, err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// nextEvent is the next event of sub, within 10 s.
func nextEvent(t *testing.T, sub *courier.Subscription) courier.Event {
	t.Helper()
	select {
	case event, ok := <-sub.Events():
		if !ok {
			t.Fatalf("the subscription ended: %v", sub.Err())
		}
		return event
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
		return nil
	}
}

// nextMessage is the next message on sub, skipping other events.
func nextMessage(t *testing.T, sub *courier.Subscription) courier.ReceivedMessage {
	t.Helper()
	for range 100 {
		if message, ok := nextEvent(t, sub).(courier.ReceivedMessage); ok {
			return message
		}
	}
	t.Fatal("no message among 100 events")
	return courier.ReceivedMessage{}
}

// ready waits for sub's Ready event and returns its count and the messages before it.
func ready(t *testing.T, sub *courier.Subscription) (int, []courier.ReceivedMessage) {
	t.Helper()
	var before []courier.ReceivedMessage
	for range 100 {
		switch event := nextEvent(t, sub).(type) {
		case courier.Ready:
			return event.OfflineCount, before
		case courier.ReceivedMessage:
			before = append(before, event)
		}
	}
	t.Fatal("no ready event among 100 events")
	return 0, nil
}

// subscribe opens user's feed and waits until it is live.
func subscribe(t *testing.T, client *courier.Client) *courier.Subscription {
	t.Helper()
	sub := client.Subscribe(context.Background())
	t.Cleanup(sub.Close)
	ready(t, sub)
	return sub
}

// expectKind fails unless err matches kind, and returns it as an *Error.
func expectKind(t *testing.T, err, kind error) *courier.Error {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("expected %v, got %v", kind, err)
	}
	var e *courier.Error
	if !errors.As(err, &e) {
		t.Fatalf("%v is not a *courier.Error", err)
	}
	return e
}

// within waits (at most 10 s) for ch to be closed or to yield.
func within[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not happen within 10 s", what)
	}
}
