// Scenario 8 of tests/scenarios.md, typed_errors: every refusal a caller may act on
// comes back as its own kind, with the gRPC code and the ErrorInfo reason.

package courier_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	courier "github.com/courier-rtm/courier/client/go"
	"github.com/courier-rtm/courier/client/go/internal/testkit"
)

func typedErrors(t *testing.T) {
	ctx := context.Background()
	small := testkit.Start(t, "--max-upload-size", "1000", "--media-ttl", "1s")
	alice := dial(t, small, "alice")

	// oversize: 1001 bytes against a 1000-byte limit is "too large".
	_, err := alice.Upload(ctx, bytes.NewReader(testkit.Pattern(1001, 7)), 1001, courier.UploadOptions{FileName: "big"})
	e := expectKind(t, err, courier.ErrTooLarge)
	if e.Code != codes.InvalidArgument || e.Reason != "MEDIA_TOO_LARGE" {
		t.Fatalf("code %v reason %q", e.Code, e.Reason)
	}

	// unknown media ID: "not found" to get and download, "media unavailable" to send.
	unknown := "0123456789abcdef0123456789abcdef"
	_, err = alice.GetMedia(ctx, unknown)
	expectKind(t, err, courier.ErrNotFound)
	_, err = alice.Download(ctx, unknown, io.Discard, courier.DownloadOptions{})
	if e := expectKind(t, err, courier.ErrNotFound); e.Code != codes.NotFound {
		t.Fatalf("code %v", e.Code)
	}
	_, err = alice.SendPeerMessage(ctx, "bob", courier.ImageMessage{MediaID: unknown}, courier.SendOptions{Offline: true})
	if e := expectKind(t, err, courier.ErrMediaUnavailable); e.Reason != "MEDIA_UNAVAILABLE" || e.Code != codes.FailedPrecondition {
		t.Fatalf("code %v reason %q", e.Code, e.Reason)
	}
	_, err = alice.StartDownload(ctx, "../etc/passwd", io.Discard, courier.DownloadOptions{})
	expectKind(t, err, courier.ErrInvalidArgument)

	// expired: with --media-ttl 1s the media is "not found" after 1.5 s.
	media, err := alice.Upload(ctx, bytes.NewReader(testkit.Pattern(10, 8)), 10, courier.UploadOptions{FileName: "short-lived"})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	_, err = alice.GetMedia(ctx, media.MediaID)
	expectKind(t, err, courier.ErrNotFound)

	// 32 KiB + 1: "message too large"; 32 KiB passes.
	if _, err := alice.SendPeerMessage(ctx, "bob", courier.Text(strings.Repeat("x", 32*1024)), courier.SendOptions{Offline: true}); err != nil {
		t.Fatalf("32 KiB: %v", err)
	}
	_, err = alice.SendPeerMessage(ctx, "bob", courier.Text(strings.Repeat("x", 32*1024+1)), courier.SendOptions{Offline: true})
	if e := expectKind(t, err, courier.ErrMessageTooLarge); e.Reason != "MESSAGE_TOO_LARGE" {
		t.Fatalf("reason %q", e.Reason)
	}

	// a 10th concurrent transfer fails with "too many transfers" in the client.
	// A 1-hour rate window: the 181st message below is refused however slowly this
	// machine runs.
	server := testkit.Start(t, "--rate-window", "1h")
	alice = dial(t, server, "alice")
	var held []*courier.Transfer[courier.Media]
	for i := range 9 {
		source, feed := io.Pipe()
		defer feed.Close()
		upload, err := alice.StartUpload(ctx, source, 10, courier.UploadOptions{FileName: "slow"})
		if err != nil {
			t.Fatalf("upload %d: %v", i+1, err)
		}
		held = append(held, upload)
	}
	server.WaitInFlight(t, 9)
	_, err = alice.StartUpload(ctx, bytes.NewReader(testkit.Pattern(10, 9)), 10, courier.UploadOptions{FileName: "tenth"})
	e = expectKind(t, err, courier.ErrTooManyTransfers)
	if e.Code != codes.ResourceExhausted || e.Reason != "TOO_MANY_TRANSFERS" {
		t.Fatalf("code %v reason %q", e.Code, e.Reason)
	}
	// Refused before reaching the server, which still sees 9.
	if n := server.Metric(t, "courier_transfers_in_flight"); n != 9 {
		t.Fatalf("the server sees %d transfers", n)
	}
	for _, upload := range held {
		upload.Cancel()
	}
	for _, upload := range held {
		_, err := upload.Wait()
		expectKind(t, err, courier.ErrCancelled)
	}
	// The client frees its slots at once; the server frees its own once it has seen
	// the cancellations.
	source, feed := io.Pipe()
	defer feed.Close()
	probe, err := alice.StartUpload(ctx, source, 10, courier.UploadOptions{FileName: "probe"})
	if err != nil {
		t.Fatalf("the client's slots are not free at once: %v", err)
	}
	probe.Cancel()
	server.WaitInFlight(t, 0)
	if _, err := alice.Upload(ctx, bytes.NewReader(testkit.Pattern(10, 9)), 10, courier.UploadOptions{FileName: "after"}); err != nil {
		t.Fatalf("the slots are not free again: %v", err)
	}

	// The rate limit: the 181st message in the window is refused.
	refused := -1
	for i := range 181 {
		_, err := alice.SendPeerMessage(ctx, "bob", courier.Text("hi"), courier.SendOptions{})
		if err == nil || errors.Is(err, courier.ErrPeerUnreachable) {
			continue
		}
		if e := expectKind(t, err, courier.ErrRateLimited); e.Reason != "RATE_LIMITED" {
			t.Fatalf("reason %q", e.Reason)
		}
		refused = i
		break
	}
	if refused != 180 {
		t.Fatalf("the rate limit refused message %d, expected the 181st", refused+1)
	}

	// a bad token fails with "unauthenticated".
	forged, err := courier.Dial(ctx, server.URL(), courier.WithToken("not-a-token"))
	if err != nil {
		t.Fatal(err)
	}
	defer forged.Close()
	_, err = forged.GetMedia(ctx, unknown)
	if e := expectKind(t, err, courier.ErrUnauthenticated); e.Code != codes.Unauthenticated {
		t.Fatalf("code %v", e.Code)
	}
	expectKind(t, forged.JoinChannel(ctx, "c"), courier.ErrUnauthenticated)
	expired := dial(t, server, "alice", courier.WithToken(testkit.TokenWith(testkit.Secret, "alice", -time.Minute)))
	expectKind(t, expired.JoinChannel(ctx, "c"), courier.ErrUnauthenticated)

	// Deleted media are "media deleted" (delete_media, deletion_test.go); held
	// content is "media quarantined".
	t.Run("quarantined", quarantinedMedia)
}
