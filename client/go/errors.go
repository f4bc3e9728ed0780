// Errors as values: one sentinel per kind of failure, for errors.Is, and one *Error
// type, for errors.As, that carries the gRPC code and the ErrorInfo reason.

package courier

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/courier-rtm/courier/client/go/internal/pb"
)

// errorDomain is the google.rpc.ErrorInfo domain of courier's refusals.
const errorDomain = "courier.v1"

// The kinds of failure. Every error a call returns is an *Error whose Is method matches
// exactly one of these (or none, for a status with no kind of its own), so callers
// write errors.Is(err, courier.ErrNotFound).
var (
	// ErrUnauthenticated: the token is missing, malformed, forged or expired.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrTooLarge: the upload is larger than the server accepts (MEDIA_TOO_LARGE).
	ErrTooLarge = errors.New("too large")
	// ErrMessageTooLarge: a message's text, file name, thumbnail and payload exceed
	// 32 KiB (MESSAGE_TOO_LARGE).
	ErrMessageTooLarge = errors.New("message too large")
	// ErrNotFound: the media ID does not exist or has expired.
	ErrNotFound = errors.New("not found or expired")
	// ErrMediaUnavailable: a message points at media that do not exist or have expired
	// (MEDIA_UNAVAILABLE).
	ErrMediaUnavailable = errors.New("media unavailable")
	// ErrTooManyTransfers: too many uploads and downloads in flight, 9 per user on the
	// server and 9 per client here (TOO_MANY_TRANSFERS).
	ErrTooManyTransfers = errors.New("too many transfers")
	// ErrRateLimited: too many messages sent too quickly (RATE_LIMITED).
	ErrRateLimited = errors.New("sending too often")
	// ErrTooManyChannels: already a member of the most channels allowed
	// (TOO_MANY_CHANNELS).
	ErrTooManyChannels = errors.New("too many channels")
	// ErrNotAMember: a channel message from a user who has not joined the channel
	// (NOT_A_MEMBER).
	ErrNotAMember = errors.New("not a member")
	// ErrPeerUnreachable: the peer is offline and offline messaging was not enabled,
	// so nothing was kept.
	ErrPeerUnreachable = errors.New("peer unreachable")
	// ErrTooManyStreams: this user already has the most Subscribe streams open
	// (TOO_MANY_STREAMS).
	ErrTooManyStreams = errors.New("too many streams")
	// ErrOfflineCacheFull: the offline cache cannot take the message: the sender has
	// the most messages waiting for offline receivers, or the server's cache is full;
	// nothing was kept (OFFLINE_CACHE_FULL).
	ErrOfflineCacheFull = errors.New("offline cache full")
	// ErrNotAnImage: a thumbnail was asked of media that is not a JPEG, PNG, GIF, WebP
	// or BMP image (NOT_AN_IMAGE).
	ErrNotAnImage = errors.New("not an image")
	// ErrImageRefused: the server will not decode the image for a thumbnail: over its
	// pixel or memory limits, or truncated or corrupt; asking again gives the same
	// answer (IMAGE_REFUSED).
	ErrImageRefused = errors.New("image refused")
	// ErrQuotaExceeded: an upload would pass the user's storage quota (live media, or
	// bytes per hour); refused before any byte was stored (QUOTA_EXCEEDED).
	ErrQuotaExceeded = errors.New("quota exceeded")
	// ErrChecksumMismatch: a checksum sent with a resumable upload does not match the
	// bytes: a part's CRC32C (nothing of it was kept; send it again) or the SHA-256
	// given at commit (the upload is removed) (CHECKSUM_MISMATCH).
	ErrChecksumMismatch = errors.New("checksum mismatch")
	// ErrUploadOffsetMismatch: a resumable upload's part does not fit what the server
	// stored (a gap, or an overlap with different bytes), or a commit came before every
	// byte was stored; Error.Metadata["committed_size"] gives the bytes stored
	// (UPLOAD_OFFSET_MISMATCH).
	ErrUploadOffsetMismatch = errors.New("upload offset mismatch")
	// ErrMediaRejected: the operator's upload hook refused the content (a scanner
	// found malware, moderation refused the image); nothing was kept, and the message
	// is the hook's (MEDIA_REJECTED).
	ErrMediaRejected = errors.New("media rejected")
	// ErrMediaQuarantined: the content is held by the operator (its upload hook or an
	// admin): it cannot be downloaded, linked or sent until an admin releases it; an
	// upload of quarantined content is refused too (MEDIA_QUARANTINED).
	ErrMediaQuarantined = errors.New("media quarantined")
	// ErrMediaDeleted: the media was deleted, by its owner (DeleteMedia) or an admin:
	// downloads, GetMedia, thumbnails and links are refused with it; messages already
	// sent with it still arrive (MEDIA_DELETED, code NotFound).
	ErrMediaDeleted = errors.New("media deleted")
	// ErrTooSlow: a Subscribe stream fell too far behind and the server ended it
	// (TOO_SLOW).
	ErrTooSlow = errors.New("too slow")
	// ErrInvalidArgument: the request broke a rule; the message says which.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrOutOfRange: a download offset lies past the end of the object.
	ErrOutOfRange = errors.New("out of range")
	// ErrUnavailable: the server could not be reached (after the retries, for calls
	// that are retried).
	ErrUnavailable = errors.New("unavailable")
	// ErrDeadlineExceeded: the call's deadline passed.
	ErrDeadlineExceeded = errors.New("deadline exceeded")
	// ErrCancelled: the call or transfer was cancelled.
	ErrCancelled = errors.New("cancelled")
	// ErrNoSuchTransfer: no transfer with this request ID is running (it finished,
	// failed, or never was).
	ErrNoSuchTransfer = errors.New("no such transfer")
	// ErrIntegrity: downloaded bytes do not match the record's size or SHA-256.
	ErrIntegrity = errors.New("integrity check failed")
)

// Error is what every call of this package fails with.
type Error struct {
	// Kind is the sentinel this error matches with errors.Is (ErrNotFound, ...), or
	// nil for a status with no kind of its own.
	Kind error
	// Code is the gRPC status code: the server's, or for a failure found by the
	// client the nearest one (DataLoss for a failed integrity check, Unavailable for a
	// server that cannot be reached, ResourceExhausted for the client's own cap of
	// transfers, InvalidArgument for input it checked).
	Code codes.Code
	// Reason is the google.rpc.ErrorInfo reason, a value name of the proto's
	// ErrorReason enum such as "MEDIA_TOO_LARGE", or "" when there is none.
	Reason string
	// Message says what went wrong, in words.
	Message string
	// Metadata is the google.rpc.ErrorInfo metadata (such as "committed_size" of an
	// UPLOAD_OFFSET_MISMATCH), or nil.
	Metadata map[string]string
	// Err is the cause (a gRPC status error, a file system error, ...), if any.
	Err error
}

// Error returns the kind and the message.
func (e *Error) Error() string {
	kind := "courier"
	if e.Kind != nil {
		kind = e.Kind.Error()
	} else if e.Code != codes.OK {
		kind = e.Code.String()
	}
	if e.Message == "" {
		return "courier: " + kind
	}
	return "courier: " + kind + ": " + e.Message
}

// Is reports whether target is this error's kind.
func (e *Error) Is(target error) bool { return e.Kind != nil && target == e.Kind }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// GRPCStatus lets status.FromError and status.Code read the code and message.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// newError is a failure found by the client itself.
func newError(kind error, code codes.Code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// invalidArgument is input that the client checked and refused.
func invalidArgument(cause error, format string, args ...any) *Error {
	e := newError(ErrInvalidArgument, codes.InvalidArgument, format, args...)
	e.Err = cause
	return e
}

// localIO is a local file that could not be read or written. A missing or unreadable
// input is the caller's argument; anything else is internal.
func localIO(err error, what string) *Error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrInvalid) {
		return invalidArgument(err, "%s: %v", what, err)
	}
	return &Error{Code: codes.Internal, Message: fmt.Sprintf("%s: %v", what, err), Err: err}
}

// reasonKinds sorts the generated ErrorReason values into kinds; the reason strings
// are the enum's value names, read from the generated code, never written here.
var reasonKinds = map[pb.ErrorReason]error{
	pb.ErrorReason_MEDIA_TOO_LARGE:        ErrTooLarge,
	pb.ErrorReason_MESSAGE_TOO_LARGE:      ErrMessageTooLarge,
	pb.ErrorReason_TOO_MANY_TRANSFERS:     ErrTooManyTransfers,
	pb.ErrorReason_RATE_LIMITED:           ErrRateLimited,
	pb.ErrorReason_TOO_MANY_CHANNELS:      ErrTooManyChannels,
	pb.ErrorReason_MEDIA_UNAVAILABLE:      ErrMediaUnavailable,
	pb.ErrorReason_NOT_A_MEMBER:           ErrNotAMember,
	pb.ErrorReason_TOO_SLOW:               ErrTooSlow,
	pb.ErrorReason_TOO_MANY_STREAMS:       ErrTooManyStreams,
	pb.ErrorReason_OFFLINE_CACHE_FULL:     ErrOfflineCacheFull,
	pb.ErrorReason_NOT_AN_IMAGE:           ErrNotAnImage,
	pb.ErrorReason_IMAGE_REFUSED:          ErrImageRefused,
	pb.ErrorReason_QUOTA_EXCEEDED:         ErrQuotaExceeded,
	pb.ErrorReason_CHECKSUM_MISMATCH:      ErrChecksumMismatch,
	pb.ErrorReason_UPLOAD_OFFSET_MISMATCH: ErrUploadOffsetMismatch,
	pb.ErrorReason_MEDIA_REJECTED:         ErrMediaRejected,
	pb.ErrorReason_MEDIA_QUARANTINED:      ErrMediaQuarantined,
	pb.ErrorReason_MEDIA_DELETED:          ErrMediaDeleted,
}

// codeKinds sorts the gRPC codes of statuses without a known reason into kinds.
var codeKinds = map[codes.Code]error{
	codes.Unauthenticated:  ErrUnauthenticated,
	codes.NotFound:         ErrNotFound,
	codes.InvalidArgument:  ErrInvalidArgument,
	codes.OutOfRange:       ErrOutOfRange,
	codes.Unavailable:      ErrUnavailable,
	codes.DeadlineExceeded: ErrDeadlineExceeded,
	codes.Canceled:         ErrCancelled,
}

// tooManyTransfers is the client's own refusal of a transfer past its cap: the same
// code and reason as the server's.
func tooManyTransfers(max int) *Error {
	e := newError(ErrTooManyTransfers, codes.ResourceExhausted,
		"too many transfers in flight: at most %d uploads and downloads per client at once", max)
	e.Reason = pb.ErrorReason_TOO_MANY_TRANSFERS.String()
	return e
}

// fromStatus turns the error of a gRPC call into an *Error. ctx is the call's
// context: a call that ended because it was cancelled or timed out says so, whatever
// the transport made of it.
func fromStatus(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var mine *Error
	if errors.As(err, &mine) {
		return mine
	}
	if ctxErr := contextError(ctx); ctxErr != nil {
		return ctxErr
	}
	st, ok := status.FromError(err)
	if !ok {
		return &Error{Kind: ErrUnavailable, Code: codes.Unavailable, Message: err.Error(), Err: err}
	}
	e := &Error{Code: st.Code(), Message: st.Message(), Err: err}
	for _, detail := range st.Details() {
		info, ok := detail.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != errorDomain {
			continue
		}
		e.Reason = info.GetReason()
		e.Metadata = info.GetMetadata()
		// A reason this version does not know counts as none: the code decides.
		if value, known := pb.ErrorReason_value[info.GetReason()]; known {
			e.Kind = reasonKinds[pb.ErrorReason(value)]
		}
	}
	if e.Kind == nil {
		e.Kind = codeKinds[e.Code]
	}
	return e
}

// contextError is the error of a call whose context ended, or nil while it is live.
func contextError(ctx context.Context) *Error {
	switch err := ctx.Err(); {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Kind: ErrDeadlineExceeded, Code: codes.DeadlineExceeded,
			Message: "the deadline passed", Err: context.Cause(ctx)}
	default:
		return &Error{Kind: ErrCancelled, Code: codes.Canceled,
			Message: "cancelled", Err: context.Cause(ctx)}
	}
}
