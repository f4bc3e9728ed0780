// What the commands print: one JSON object per line, the reference's keys.

package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"

	"google.golang.org/grpc/codes"

	courier "github.com/courier-rtm/courier/client/go"
)

// object is one JSON line.
type object map[string]any

// printLine writes value as one line of JSON on stdout.
func printLine(value object) {
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetEscapeHTML(false)
	encoder.Encode(value)
}

func mediaJSON(m courier.Media) object {
	return object{
		"media_id": m.MediaID, "kind": m.Kind.String(), "file_name": m.FileName, "size": m.Size,
		"sha256": m.SHA256Hex(), "content_type": m.ContentType, "width": m.Width, "height": m.Height,
		"created_ms": m.Created.UnixMilli(), "expires_ms": m.Expires.UnixMilli(),
	}
}

func messageJSON(message courier.Message) object {
	switch m := message.(type) {
	case courier.TextMessage:
		return object{"type": "text", "text": m.Text}
	case courier.RawMessage:
		return object{"type": "raw", "payload_hex": hex.EncodeToString(m.Payload), "description": m.Description}
	case courier.ImageMessage:
		return object{"type": "image", "media_id": m.MediaID, "file_name": m.FileName, "size": m.Size,
			"width": m.Width, "height": m.Height, "thumbnail_bytes": len(m.Thumbnail)}
	case courier.FileMessage:
		return object{"type": "file", "media_id": m.MediaID, "file_name": m.FileName, "size": m.Size,
			"width": 0, "height": 0, "thumbnail_bytes": len(m.Thumbnail)}
	default:
		return object{"type": "unknown"}
	}
}

func eventJSON(event courier.Event) object {
	switch e := event.(type) {
	case courier.ReceivedMessage:
		var channel any
		if e.Channel != "" {
			channel = e.Channel
		}
		return object{"event": "message", "from": e.From, "channel": channel, "message_id": e.MessageID,
			"server_time_ms": e.ServerTime.UnixMilli(), "offline": e.Offline, "cursor": e.Cursor,
			"message": messageJSON(e.Message)}
	case courier.Ready:
		return object{"event": "ready", "offline_count": e.OfflineCount, "cursor": e.Cursor, "events_lost": e.EventsLost}
	case courier.Disconnected:
		return object{"event": "disconnected", "reason": e.Err.Error()}
	case courier.Reconnected:
		return object{"event": "reconnected"}
	default:
		return object{"event": "unknown"}
	}
}

// printError prints the error line of a failed command: the gRPC code's name, the
// ErrorInfo reason ("" for none) and the message.
func printError(err error) {
	var e *courier.Error
	if !errors.As(err, &e) {
		e = &courier.Error{Code: codes.Internal, Message: err.Error()}
	}
	printLine(object{"error": object{"code": codeName(e.Code), "reason": e.Reason, "message": e.Error()}})
}

// codeName is the canonical name of a gRPC code, as in the grpc-status documentation
// (codes.Code's String is CamelCase).
func codeName(code codes.Code) string {
	names := map[codes.Code]string{
		codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
		codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
		codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
		codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
		codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
		codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL",
		codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
	}
	if name, ok := names[code]; ok {
		return name
	}
	return "UNKNOWN"
}

// sha256OfFile is the lowercase hex SHA-256 of the file at path.
func sha256OfFile(path string) (string, error) {
	file, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer file.Close()
	hash := sha256.New()
	if _, err := io.Copy(hash, file); err != nil {
		return "", err
	}
	return hex.EncodeToString(hash.Sum(nil)), nil
}
