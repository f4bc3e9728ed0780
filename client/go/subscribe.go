// The live feed: Subscribe delivers typed events on a channel and reconnects by
// itself, with backoff, when the connection drops or the server restarts.

package courier

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/courier-rtm/courier/client/go/internal/pb"
)

// eventQueue is how many events may wait for the application before the feed stops
// reading from the server (which ends a stream that falls too far behind).
const eventQueue = 256

// Event is something that happened on a subscription: a ReceivedMessage, Ready,
// Disconnected or Reconnected. Use a type switch to tell them apart.
type Event interface {
	// isEvent is unexported so that the four types above are the only events.
	isEvent()
}

// ReceivedMessage is a message that arrived: from a peer or in a channel; text, raw,
// image or file (Agora's onMessageReceivedFromPeer, onImageMessageReceivedFromPeer,
// onFileMessageReceivedFromPeer and their channel counterparts).
type ReceivedMessage struct {
	// From is the sender's user ID.
	From string
	// Channel is the channel it was sent to, or "" for a peer message.
	Channel string
	// MessageID is the server's ID of the message.
	MessageID string
	// ServerTime is when the server accepted it.
	ServerTime time.Time
	// Offline is true for a peer message cached while this user was offline.
	Offline bool
	// Message is the content: a TextMessage, RawMessage, ImageMessage or FileMessage.
	Message Message
	// Cursor is the event's position in this user's event sequence (per user,
	// increasing): SubscribeAfter(ctx, Cursor) brings what came after it.
	Cursor uint64
}

// Ready says the feed is live: it comes after each connect, after the cached
// offline messages, and from then on every message to this user arrives as it is sent.
type Ready struct {
	// OfflineCount is how many cached offline messages came before it.
	OfflineCount int
	// Cursor is the cursor of this user's latest event when the feed went live: where
	// to resume when no message has come yet.
	Cursor uint64
	// EventsLost is true when the cursor the feed resumed after was older than the
	// events the server still holds: some messages after it are lost.
	EventsLost bool
}

// Disconnected says the connection dropped and the feed is reconnecting. Messages
// sent to this user meanwhile are cached only if their senders enabled offline
// messaging.
type Disconnected struct {
	// Err is why.
	Err error
}

// Reconnected says the feed is connected again after a Disconnected; a Ready follows.
type Reconnected struct{}

func (ReceivedMessage) isEvent() {}
func (Ready) isEvent()           {}
func (Disconnected) isEvent()    {}
func (Reconnected) isEvent()     {}

// Subscription is an open feed. Range over Events; it is closed when the context
// given to Subscribe ends, when Close is called, or on an error that reconnecting
// cannot cure (Err says which).
type Subscription struct {
	// events carries the feed to the application.
	events chan Event
	// stop ends the feed's goroutine.
	stop context.CancelFunc
	// mu guards err.
	mu sync.Mutex
	// err is why the feed ended, set before events is closed.
	err error
	// cursor is the cursor of the last event handed to events (or of the last ready).
	cursor atomic.Uint64
}

// Cursor is the cursor of the last message handed on (or of the last Ready, when it
// is later): where a new subscription resumes with SubscribeAfter.
func (s *Subscription) Cursor() uint64 { return s.cursor.Load() }

// Events is the feed; the channel is closed when the subscription ends.
func (s *Subscription) Events() <-chan Event { return s.events }

// Err is the error that ended the feed (an expired token, say), or nil while it runs
// and when it was closed or its context ended.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the subscription; Events is closed soon after.
func (s *Subscription) Close() { s.stop() }

// Subscribe opens this user's live feed; while it is open the user is online. It
// reconnects by itself (backoff from 100 ms up to 5 s), saying so with Disconnected
// and Reconnected events, until ctx ends, Close is called or the server refuses the
// caller (ErrUnauthenticated, ErrInvalidArgument). A reconnection resumes after the
// cursor of the last message handed on (or of the Ready, when none came), so that
// nothing is missed or repeated.
func (c *Client) Subscribe(ctx context.Context) *Subscription { return c.SubscribeAfter(ctx, 0) }

// SubscribeAfter is Subscribe that first brings the events after cursor (a
// ReceivedMessage's Cursor) that the server still holds; a Ready with EventsLost
// says some were no longer held.
func (c *Client) SubscribeAfter(ctx context.Context, cursor uint64) *Subscription {
	ctx, stop := context.WithCancel(ctx)
	s := &Subscription{events: make(chan Event, eventQueue), stop: stop}
	s.cursor.Store(cursor)
	go c.feed(ctx, s)
	return s
}

// feed keeps a Subscribe call open, forwarding its events, and opens a new one
// whenever it ends.
func (c *Client) feed(ctx context.Context, s *Subscription) {
	defer close(s.events)
	defer s.stop()
	backoff := c.opts.backoff
	dropped := false
	send := func(event Event) bool {
		select {
		case s.events <- event:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		err := c.stream(ctx, s, func(event Event) bool {
			backoff = c.opts.backoff
			if dropped {
				dropped = false
				if !send(Reconnected{}) {
					return false
				}
			}
			return send(event)
		})
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrInvalidArgument) {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return
		}
		if !send(Disconnected{Err: err}) {
			return
		}
		dropped = true
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// stream runs one Subscribe call, handing each event to deliver until deliver
// returns false or the call ends; it returns why the call ended.
func (c *Client) stream(ctx context.Context, s *Subscription, deliver func(Event) bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.messaging.Subscribe(ctx, &pb.SubscribeRequest{After: s.cursor.Load()})
	if err != nil {
		return fromStatus(ctx, err)
	}
	for {
		response, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return newError(ErrUnavailable, codes.Unavailable, "the server ended the feed")
		}
		if err != nil {
			return fromStatus(ctx, err)
		}
		event := eventFromProto(response)
		if event == nil {
			continue
		}
		switch e := event.(type) {
		case ReceivedMessage:
			if e.Cursor != 0 {
				if e.Cursor <= s.cursor.Load() {
					continue // handed on before this connection
				}
				s.cursor.Store(e.Cursor)
			}
		case Ready:
			if e.Cursor > s.cursor.Load() {
				s.cursor.Store(e.Cursor)
			}
		}
		if !deliver(event) {
			return nil
		}
	}
}

// eventFromProto is nil for an event this version does not know.
func eventFromProto(response *pb.SubscribeResponse) Event {
	switch e := response.GetEvent().(type) {
	case *pb.SubscribeResponse_PeerMessage:
		m := e.PeerMessage
		message := messageFromProto(m.GetMessage())
		if message == nil {
			return nil
		}
		return ReceivedMessage{
			From: m.GetSenderId(), MessageID: m.GetMessageId(), ServerTime: timeFromProto(m.GetServerTime()),
			Offline: m.GetOffline(), Message: message, Cursor: response.GetCursor(),
		}
	case *pb.SubscribeResponse_ChannelMessage:
		m := e.ChannelMessage
		message := messageFromProto(m.GetMessage())
		if message == nil {
			return nil
		}
		return ReceivedMessage{
			From: m.GetSenderId(), Channel: m.GetChannelId(), MessageID: m.GetMessageId(),
			ServerTime: timeFromProto(m.GetServerTime()), Message: message, Cursor: response.GetCursor(),
		}
	case *pb.SubscribeResponse_Ready:
		return Ready{
			OfflineCount: int(e.Ready.GetOfflineMessageCount()),
			Cursor:       e.Ready.GetCursor(),
			EventsLost:   e.Ready.GetEventsLost(),
		}
	default:
		return nil
	}
}
