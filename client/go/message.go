// Messages: what is sent and what arrives, and the calls that send them and manage
// channels and presence.

package courier

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/courier-rtm/courier/client/go/internal/pb"
)

// Message is the content of a message: a TextMessage, RawMessage, ImageMessage or
// FileMessage. Use a type switch to tell them apart.
type Message interface {
	// toProto is unexported so that the four types above are the only messages.
	toProto() *pb.Message
}

// TextMessage is UTF-8 text.
type TextMessage struct {
	// Text counts towards the 32 KiB message limit.
	Text string
}

// Text is a text message.
func Text(text string) TextMessage { return TextMessage{Text: text} }

// RawMessage is bytes for the application's own formats.
type RawMessage struct {
	// Payload counts towards the 32 KiB message limit.
	Payload []byte
	// Description says what the payload is, such as a format name.
	Description string
}

// ImageMessage points at an uploaded image; the rest is what receivers show before
// they download it.
type ImageMessage struct {
	// MediaID is the media ID of the uploaded image.
	MediaID string
	// FileName is the display name (filled by the server when empty).
	FileName string
	// Size is in bytes (filled by the server when 0).
	Size int64
	// Width and Height are in pixels (filled by the server when 0; values set here win).
	Width, Height int
	// Thumbnail is a small preview, delivered as given.
	Thumbnail []byte
	// ThumbnailWidth and ThumbnailHeight are the preview's size in pixels.
	ThumbnailWidth, ThumbnailHeight int
}

// FileMessage points at an uploaded file; the rest is what receivers show before
// they download it.
type FileMessage struct {
	// MediaID is the media ID of the uploaded file.
	MediaID string
	// FileName is the display name (filled by the server when empty).
	FileName string
	// Size is in bytes (filled by the server when 0).
	Size int64
	// Thumbnail is a small preview, delivered as given.
	Thumbnail []byte
}

func (m TextMessage) toProto() *pb.Message {
	return &pb.Message{Body: &pb.Message_Text{Text: &pb.TextMessage{Text: m.Text}}}
}

func (m RawMessage) toProto() *pb.Message {
	return &pb.Message{Body: &pb.Message_Raw{Raw: &pb.RawMessage{Payload: m.Payload, Description: m.Description}}}
}

func (m ImageMessage) toProto() *pb.Message {
	return &pb.Message{Body: &pb.Message_Image{Image: &pb.ImageMessage{
		MediaId: m.MediaID, FileName: m.FileName, Size: uint64(max(m.Size, 0)),
		Width: uint32(max(m.Width, 0)), Height: uint32(max(m.Height, 0)), Thumbnail: m.Thumbnail,
		ThumbnailWidth: uint32(max(m.ThumbnailWidth, 0)), ThumbnailHeight: uint32(max(m.ThumbnailHeight, 0)),
	}}}
}

func (m FileMessage) toProto() *pb.Message {
	return &pb.Message{Body: &pb.Message_File{File: &pb.FileMessage{
		MediaId: m.MediaID, FileName: m.FileName, Size: uint64(max(m.Size, 0)), Thumbnail: m.Thumbnail,
	}}}
}

// messageFromProto is nil for a message with no body this version knows.
func messageFromProto(m *pb.Message) Message {
	switch body := m.GetBody().(type) {
	case *pb.Message_Text:
		return TextMessage{Text: body.Text.GetText()}
	case *pb.Message_Raw:
		return RawMessage{Payload: body.Raw.GetPayload(), Description: body.Raw.GetDescription()}
	case *pb.Message_Image:
		i := body.Image
		return ImageMessage{
			MediaID: i.GetMediaId(), FileName: i.GetFileName(), Size: int64(i.GetSize()),
			Width: int(i.GetWidth()), Height: int(i.GetHeight()), Thumbnail: i.GetThumbnail(),
			ThumbnailWidth: int(i.GetThumbnailWidth()), ThumbnailHeight: int(i.GetThumbnailHeight()),
		}
	case *pb.Message_File:
		f := body.File
		return FileMessage{MediaID: f.GetMediaId(), FileName: f.GetFileName(), Size: int64(f.GetSize()), Thumbnail: f.GetThumbnail()}
	default:
		return nil
	}
}

// SendOptions are the sender's choices for a peer message.
type SendOptions struct {
	// Offline keeps the message for an offline peer (up to 200, for 7 days) and
	// delivers it on their next Subscribe; without it a message to an offline peer is
	// dropped and the send fails with ErrPeerUnreachable.
	Offline bool
	// ClientMessageID makes the send safe to repeat: a send repeating the ID of an
	// earlier one is answered as the first was and delivers nothing again. When
	// empty, the client makes one (32 lowercase hex characters from 128 random bits)
	// and reuses it on its own retries. Pass your own to make your retries as safe.
	ClientMessageID string
}

// clientMessageID is the caller's ID, or a new random one.
func clientMessageID(given string) string {
	if given != "" {
		return given
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		panic(err) // crypto/rand does not fail on the systems Go supports
	}
	return hex.EncodeToString(id[:])
}

// Delivery is what became of a sent message.
type Delivery int

const (
	// Delivered: handed to the receivers' open subscriptions.
	Delivered Delivery = iota + 1
	// Cached: the peer was offline; the message is kept for their next Subscribe.
	Cached
	// PeerUnreachable: the peer was offline and offline messaging was off; nothing
	// was kept (the send also returns ErrPeerUnreachable).
	PeerUnreachable
)

// String returns "delivered", "cached" or "unreachable".
func (d Delivery) String() string {
	switch d {
	case Delivered:
		return "delivered"
	case Cached:
		return "cached"
	case PeerUnreachable:
		return "unreachable"
	default:
		return "unknown"
	}
}

// Receipt is the server's answer to a sent message.
type Receipt struct {
	// MessageID is the ID the server gave the message.
	MessageID string
	// ServerTime is when the server accepted it.
	ServerTime time.Time
	// Delivery says whether it was delivered, cached or dropped.
	Delivery Delivery
}

// checkMessage is the send methods' check, made before any call: no message, a text
// message with no text and a raw message with no payload are refused, as the server
// refuses them (INVALID_ARGUMENT).
func checkMessage(message Message) error {
	switch m := message.(type) {
	case nil:
		return invalidArgument(nil, "no message to send")
	case TextMessage:
		if m.Text == "" {
			return invalidArgument(nil, "a text message needs text: an empty one cannot be sent")
		}
	case RawMessage:
		if len(m.Payload) == 0 {
			return invalidArgument(nil, "a raw message needs a payload: an empty one cannot be sent")
		}
	}
	return nil
}

// SendPeerMessage sends message to the user peer (Agora's sendMessageToPeer). When
// the peer is offline and opts.Offline is not set, nothing is kept: the receipt (with
// Delivery PeerUnreachable) comes back with an error matching ErrPeerUnreachable. The
// send carries opts.ClientMessageID (or a generated one) and is retried with it while
// the server is unavailable: the server delivers it once. An empty text or raw message
// is refused with ErrInvalidArgument before any call.
func (c *Client) SendPeerMessage(ctx context.Context, peer string, message Message, opts SendOptions) (Receipt, error) {
	if err := checkMessage(message); err != nil {
		return Receipt{}, err
	}
	request := &pb.SendPeerMessageRequest{
		PeerId:          peer,
		Message:         message.toProto(),
		Options:         &pb.SendMessageOptions{EnableOfflineMessaging: opts.Offline},
		ClientMessageId: clientMessageID(opts.ClientMessageID),
	}
	response, err := retrying(c, ctx, func(ctx context.Context) (*pb.SendPeerMessageResponse, error) {
		return c.messaging.SendPeerMessage(ctx, request)
	})
	if err != nil {
		return Receipt{}, err
	}
	receipt := Receipt{MessageID: response.GetMessageId(), ServerTime: timeFromProto(response.GetServerTime())}
	switch response.GetState() {
	case pb.PeerMessageState_PEER_MESSAGE_STATE_DELIVERED:
		receipt.Delivery = Delivered
	case pb.PeerMessageState_PEER_MESSAGE_STATE_CACHED:
		receipt.Delivery = Cached
	default:
		receipt.Delivery = PeerUnreachable
		return receipt, newError(ErrPeerUnreachable, codes.Unavailable,
			"%s is offline; message %s was not kept (send with SendOptions{Offline: true} to keep it)",
			peer, receipt.MessageID)
	}
	return receipt, nil
}

// SendChannelMessage sends message to every other member of channel (Agora's
// sendMessage on a channel); the caller must be a member. Retried as SendPeerMessage
// is, with opts' ClientMessageID (Offline does not apply to channels). An empty text or
// raw message is refused with ErrInvalidArgument before any call.
func (c *Client) SendChannelMessage(ctx context.Context, channel string, message Message, opts ...SendOptions) (Receipt, error) {
	if err := checkMessage(message); err != nil {
		return Receipt{}, err
	}
	id := ""
	for _, o := range opts {
		id = o.ClientMessageID
	}
	request := &pb.SendChannelMessageRequest{ChannelId: channel, Message: message.toProto(), ClientMessageId: clientMessageID(id)}
	response, err := retrying(c, ctx, func(ctx context.Context) (*pb.SendChannelMessageResponse, error) {
		return c.messaging.SendChannelMessage(ctx, request)
	})
	if err != nil {
		return Receipt{}, err
	}
	return Receipt{
		MessageID:  response.GetMessageId(),
		ServerTime: timeFromProto(response.GetServerTime()),
		Delivery:   Delivered,
	}, nil
}

// JoinChannel makes the caller a member of channel (joining twice is fine).
func (c *Client) JoinChannel(ctx context.Context, channel string) error {
	_, err := retrying(c, ctx, func(ctx context.Context) (*pb.JoinChannelResponse, error) {
		return c.messaging.JoinChannel(ctx, &pb.JoinChannelRequest{ChannelId: channel})
	})
	return err
}

// LeaveChannel ends the caller's membership of channel; delivery stops at once.
func (c *Client) LeaveChannel(ctx context.Context, channel string) error {
	_, err := retrying(c, ctx, func(ctx context.Context) (*pb.LeaveChannelResponse, error) {
		return c.messaging.LeaveChannel(ctx, &pb.LeaveChannelRequest{ChannelId: channel})
	})
	return err
}

// ChannelMembers returns the user IDs of channel's members, sorted.
func (c *Client) ChannelMembers(ctx context.Context, channel string) ([]string, error) {
	response, err := retrying(c, ctx, func(ctx context.Context) (*pb.GetChannelMembersResponse, error) {
		return c.messaging.GetChannelMembers(ctx, &pb.GetChannelMembersRequest{ChannelId: channel})
	})
	return response.GetUserIds(), err
}

// OnlineStatus is whether one user is online.
type OnlineStatus struct {
	// UserID is the user asked about.
	UserID string
	// Online is true while the user has a subscription open.
	Online bool
}

// QueryOnlineStatus tells whether each of users is online, in the order asked
// (Agora's queryPeersOnlineStatus).
func (c *Client) QueryOnlineStatus(ctx context.Context, users ...string) ([]OnlineStatus, error) {
	response, err := retrying(c, ctx, func(ctx context.Context) (*pb.QueryPeersOnlineStatusResponse, error) {
		return c.messaging.QueryPeersOnlineStatus(ctx, &pb.QueryPeersOnlineStatusRequest{UserIds: users})
	})
	if err != nil {
		return nil, err
	}
	statuses := make([]OnlineStatus, 0, len(response.GetStatuses()))
	for _, s := range response.GetStatuses() {
		statuses = append(statuses, OnlineStatus{UserID: s.GetUserId(), Online: s.GetOnline()})
	}
	return statuses, nil
}
