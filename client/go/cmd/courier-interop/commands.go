// The commands that move media and messages.

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc/codes"

	courier "github.com/courier-rtm/courier/client/go"
)

func upload(ctx context.Context, c *courier.Client, path string, image bool) (courier.Media, error) {
	kind := courier.File
	if image {
		kind = courier.Image
	}
	return c.UploadFile(ctx, path, courier.UploadOptions{Kind: kind})
}

// prepareResumable checks the flags of `upload PATH --resume [--stop-after-parts N]`.
func prepareResumable(p parsed) (func(context.Context, *courier.Client) error, error) {
	if !p.has("resume") {
		return nil, usagef("--stop-after-parts needs --resume")
	}
	stopAfter := 0
	if p.has("stop-after-parts") {
		n, err := p.count("stop-after-parts")
		if err != nil {
			return nil, err
		}
		if n < 1 {
			return nil, usagef("--stop-after-parts needs a number of parts of at least 1")
		}
		stopAfter = n
	}
	return func(ctx context.Context, c *courier.Client) error {
		kind := courier.File
		if p.has("image") {
			kind = courier.Image
		}
		done, err := c.UploadResumable(ctx, p.positional[0], courier.ResumableOptions{
			UploadOptions: courier.UploadOptions{Kind: kind}, StopAfterParts: stopAfter,
		})
		if err != nil {
			return err
		}
		if done.Media == nil {
			printLine(object{"event": "paused", "upload_id": done.UploadID, "committed_size": done.CommittedSize})
			return nil
		}
		line := mediaJSON(*done.Media)
		line["resumed_from"] = done.ResumedFrom
		printLine(line)
		return nil
	}, nil
}

func prepareSend(p parsed) (func(context.Context, *courier.Client) error, error) {
	if err := p.exactly(); err != nil {
		return nil, err
	}
	target, err := p.oneOf("to", "channel")
	if err != nil {
		return nil, err
	}
	if target == "" {
		return nil, usagef("say where to send: --to PEER or --channel CH")
	}
	content, err := p.oneOf("text", "image", "file", "media-id")
	if err != nil {
		return nil, err
	}
	if content == "" {
		return nil, usagef("say what to send: --text, --image, --file or --media-id")
	}
	if p.has("offline") && target == "channel" {
		return nil, usagef("--offline is for peer messages (--to)")
	}
	return func(ctx context.Context, c *courier.Client) error {
		message, err := compose(ctx, c, content, p.flags[content])
		if err != nil {
			return err
		}
		var receipt courier.Receipt
		id := p.flags["client-message-id"]
		if target == "to" {
			receipt, err = c.SendPeerMessage(ctx, p.flags["to"], message, courier.SendOptions{Offline: p.has("offline"), ClientMessageID: id})
		} else {
			receipt, err = c.SendChannelMessage(ctx, p.flags["channel"], message, courier.SendOptions{ClientMessageID: id})
		}
		if errors.Is(err, courier.ErrPeerUnreachable) {
			printLine(object{"message_id": receipt.MessageID, "state": "unreachable"})
			fmt.Fprintf(os.Stderr, "courier-interop: %s is offline; the message was not kept (send with --offline to keep it)\n", p.flags["to"])
			return errUnreachable
		}
		if err != nil {
			return err
		}
		printLine(object{"message_id": receipt.MessageID, "state": receipt.Delivery.String(), "server_time_ms": receipt.ServerTime.UnixMilli()})
		return nil
	}, nil
}

// compose makes the message that send sends: text, an upload, or a stored record.
func compose(ctx context.Context, c *courier.Client, content, value string) (courier.Message, error) {
	switch content {
	case "text":
		return courier.Text(value), nil
	case "image", "file":
		media, err := upload(ctx, c, value, content == "image")
		if err != nil {
			return nil, err
		}
		return media.Message(), nil
	case "media-id":
		media, err := c.GetMedia(ctx, value)
		if err != nil {
			return nil, err
		}
		return media.Message(), nil
	default:
		return nil, &courier.Error{Kind: courier.ErrInvalidArgument, Code: codes.InvalidArgument,
			Message: "nothing to send"}
	}
}

func channelCommand(ctx context.Context, c *courier.Client, name, channel string) error {
	switch name {
	case "join":
		if err := c.JoinChannel(ctx, channel); err != nil {
			return err
		}
		printLine(object{"channel": channel, "result": "joined"})
	case "leave":
		if err := c.LeaveChannel(ctx, channel); err != nil {
			return err
		}
		printLine(object{"channel": channel, "result": "left"})
	default:
		members, err := c.ChannelMembers(ctx, channel)
		if err != nil {
			return err
		}
		if members == nil {
			members = []string{}
		}
		printLine(object{"channel": channel, "members": members})
	}
	return nil
}

func download(ctx context.Context, c *courier.Client, mediaID, path string) error {
	media, err := c.DownloadFile(ctx, mediaID, path, courier.DownloadOptions{})
	if err != nil {
		return err
	}
	return printSaved(media, path)
}

// thumbnail saves the server's thumbnail of image mediaID at path and prints its line.
func thumbnail(ctx context.Context, c *courier.Client, mediaID string, maxEdge int, path string) error {
	thumb, err := c.Thumbnail(ctx, mediaID, maxEdge)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, thumb.Data, 0o644); err != nil {
		// A failed write leaves nothing at path and is INTERNAL, as in the Rust reference.
		_ = os.Remove(path)
		return &courier.Error{Code: codes.Internal, Message: fmt.Sprintf("could not write %s: %v", path, err), Err: err}
	}
	printLine(object{"event": "thumbnail", "media_id": mediaID, "content_type": thumb.ContentType,
		"width": thumb.Width, "height": thumb.Height, "size": len(thumb.Data), "path": path})
	return nil
}

// prepareURL checks the flags of `url MEDIA_ID [--max-edge N] [--ttl DURATION]`:
// --max-edge 0 (the default) links to the object, --ttl is a Go duration (60s, 10m).
func prepareURL(p parsed) (func(context.Context, *courier.Client) error, error) {
	if err := p.exactly("MEDIA_ID"); err != nil {
		return nil, err
	}
	maxEdge, err := p.count("max-edge")
	if err != nil {
		return nil, err
	}
	var lifetime time.Duration
	if p.has("ttl") {
		lifetime, err = time.ParseDuration(p.flags["ttl"])
		if err != nil || lifetime <= 0 {
			return nil, usagef("--ttl needs a positive duration such as 60s or 10m, not %q", p.flags["ttl"])
		}
	}
	return func(ctx context.Context, c *courier.Client) error {
		link, expires, err := c.MediaURL(ctx, p.positional[0], courier.MediaURLOptions{MaxEdge: maxEdge, Lifetime: lifetime})
		if err != nil {
			return err
		}
		// RFC 3339 in UTC with whole seconds, as the reference prints it.
		printLine(object{"url": link, "expire_time": expires.UTC().Truncate(time.Second).Format(time.RFC3339)})
		return nil
	}, nil
}

// printSaved prints a saved line, with the SHA-256 of the bytes on disk (read back
// rather than taken from the record that the library checked them against).
func printSaved(media courier.Media, path string) error {
	digest, err := sha256OfFile(path)
	if err != nil {
		return err
	}
	line := mediaJSON(media)
	line["event"] = "saved"
	line["path"] = path
	line["sha256"] = digest
	printLine(line)
	return nil
}

// listen prints the feed; with save, it downloads every image and file into that
// folder; with count > 0, it returns after that many messages (and their saves).
func listen(ctx context.Context, c *courier.Client, save string, count int, after uint64) error {
	if save != "" {
		if err := os.MkdirAll(save, 0o755); err != nil {
			return err
		}
	}
	feed := c.SubscribeAfter(ctx, after)
	defer feed.Close()
	messages := 0
	for count == 0 || messages < count {
		event, open := <-feed.Events()
		if !open {
			return feed.Err()
		}
		printLine(eventJSON(event))
		received, ok := event.(courier.ReceivedMessage)
		if !ok {
			continue
		}
		messages++
		if save != "" {
			if err := saveMedia(ctx, c, save, received.Message); errors.Is(err, courier.ErrCancelled) {
				return err
			} else if err != nil {
				// One failed download does not end the feed.
				fmt.Fprintf(os.Stderr, "courier-interop: could not save a file: %v\n", err)
			}
		}
	}
	return nil
}

// saveMedia downloads the media of an image or file message into dir, under its
// file name made safe and unique.
func saveMedia(ctx context.Context, c *courier.Client, dir string, message courier.Message) error {
	var mediaID, name string
	switch m := message.(type) {
	case courier.ImageMessage:
		mediaID, name = m.MediaID, m.FileName
	case courier.FileMessage:
		mediaID, name = m.MediaID, m.FileName
	default:
		return nil
	}
	path, err := courier.UniquePath(dir, name, mediaID)
	if err != nil {
		return err
	}
	media, err := c.DownloadFile(ctx, mediaID, path, courier.DownloadOptions{})
	if err != nil {
		return err
	}
	return printSaved(media, path)
}
