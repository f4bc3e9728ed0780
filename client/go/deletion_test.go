// Scenario 13 of tests/scenarios.md, delete_media (issue 30): the owner deletes an
// image that was sent; messages already sent still arrive, the media ID is refused.
// And the refusals of held content, MEDIA_QUARANTINED, through the admin command.

package courier_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"

	courier "github.com/courier-rtm/courier/client/go"
	"github.com/courier-rtm/courier/client/go/internal/testkit"
)

func deleteMedia(t *testing.T) {
	ctx := context.Background()
	server := testkit.Start(t)
	alice, bob, carol := dial(t, server, "alice"), dial(t, server, "bob"), dial(t, server, "carol")
	path := filepath.Join(t.TempDir(), "cat.png")
	if err := os.WriteFile(path, testkit.PNG(40, 30), 0o644); err != nil {
		t.Fatal(err)
	}
	media, err := alice.UploadFile(ctx, path, courier.UploadOptions{Kind: courier.Image})
	if err != nil {
		t.Fatal(err)
	}
	feed := subscribe(t, bob)
	if receipt, err := alice.SendPeerMessage(ctx, "bob", media.ImageMessage(), courier.SendOptions{}); err != nil || receipt.Delivery != courier.Delivered {
		t.Fatalf("to bob: %+v, %v", receipt, err)
	}
	if receipt, err := alice.SendPeerMessage(ctx, "carol", media.ImageMessage(), courier.SendOptions{Offline: true}); err != nil || receipt.Delivery != courier.Cached {
		t.Fatalf("to carol: %+v, %v", receipt, err)
	}
	// check: bob received the image message before the deletion.
	got := nextMessage(t, feed)
	if image, ok := got.Message.(courier.ImageMessage); !ok || image.MediaID != media.MediaID || image.Width != 40 || image.Height != 30 {
		t.Fatalf("bob got %+v", got)
	}
	if err := alice.DeleteMedia(ctx, media.MediaID); err != nil {
		t.Fatalf("delete: %v", err)
	}

	// check: downloading, getting and thumbnailing it now fail with "media deleted".
	deleted := func(what string, err error) {
		t.Helper()
		e := expectKind(t, err, courier.ErrMediaDeleted)
		if e.Code != codes.NotFound || e.Reason != "MEDIA_DELETED" {
			t.Fatalf("%s: code %v reason %q", what, e.Code, e.Reason)
		}
	}
	_, err = bob.Download(ctx, media.MediaID, io.Discard, courier.DownloadOptions{})
	deleted("download", err)
	target := filepath.Join(t.TempDir(), "cat.png")
	_, err = bob.DownloadFile(ctx, media.MediaID, target, courier.DownloadOptions{})
	deleted("download to a file", err)
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Fatalf("a refused download left %s: %v", target, err)
	}
	_, err = bob.GetMedia(ctx, media.MediaID)
	deleted("get", err)
	_, err = bob.Thumbnail(ctx, media.MediaID, 96)
	deleted("thumbnail", err)

	// check: a new send of it fails with "media unavailable".
	_, err = alice.SendPeerMessage(ctx, "bob", media.ImageMessage(), courier.SendOptions{})
	if e := expectKind(t, err, courier.ErrMediaUnavailable); e.Code != codes.FailedPrecondition || e.Reason != "MEDIA_UNAVAILABLE" {
		t.Fatalf("send: code %v reason %q", e.Code, e.Reason)
	}

	// check: carol receives the message cached before the deletion.
	carolFeed := carol.Subscribe(ctx)
	t.Cleanup(carolFeed.Close)
	count, cached := ready(t, carolFeed)
	if count != 1 || len(cached) != 1 || !cached[0].Offline || cached[0].From != "alice" {
		t.Fatalf("carol found %d cached: %+v", count, cached)
	}
	if image, ok := cached[0].Message.(courier.ImageMessage); !ok || image.MediaID != media.MediaID {
		t.Fatalf("carol got %+v", cached[0].Message)
	}

	// check: deleting it again succeeds; bob cannot delete alice's media, which still
	// downloads.
	if err := alice.DeleteMedia(ctx, media.MediaID); err != nil {
		t.Fatalf("deleting again: %v", err)
	}
	data := testkit.Pattern(1000, 13)
	other, err := alice.Upload(ctx, bytes.NewReader(data), int64(len(data)), courier.UploadOptions{FileName: "notes.bin"})
	if err != nil {
		t.Fatal(err)
	}
	if e := expectKind(t, bob.DeleteMedia(ctx, other.MediaID), courier.ErrNotFound); e.Code != codes.NotFound || e.Reason != "" {
		t.Fatalf("bob's delete: code %v reason %q", e.Code, e.Reason)
	}
	var back bytes.Buffer
	if _, err := alice.Download(ctx, other.MediaID, &back, courier.DownloadOptions{}); err != nil || !bytes.Equal(back.Bytes(), data) {
		t.Fatalf("after bob's delete: %v", err)
	}
	expectKind(t, alice.DeleteMedia(ctx, "not-a-media-id"), courier.ErrInvalidArgument)
}

// quarantinedMedia: content an admin quarantined (`courier-server media quarantine`)
// is refused with MEDIA_QUARANTINED to downloads, lookups, sends and new uploads.
func quarantinedMedia(t *testing.T) {
	ctx := context.Background()
	server := testkit.Start(t)
	alice, bob := dial(t, server, "alice"), dial(t, server, "bob")
	data := testkit.Pattern(2000, 17)
	media, err := alice.Upload(ctx, bytes.NewReader(data), int64(len(data)), courier.UploadOptions{FileName: "held.bin"})
	if err != nil {
		t.Fatal(err)
	}
	bin, err := testkit.Binary()
	if err != nil {
		t.Fatal(err)
	}
	admin := exec.Command(bin, "media", "quarantine", media.MediaID, "--data-dir", server.DataDir)
	if out, err := admin.CombinedOutput(); err != nil {
		t.Fatalf("courier-server media quarantine: %v\n%s", err, out)
	}
	held := func(what string, err error) {
		t.Helper()
		e := expectKind(t, err, courier.ErrMediaQuarantined)
		if e.Code != codes.FailedPrecondition || e.Reason != "MEDIA_QUARANTINED" {
			t.Fatalf("%s: code %v reason %q", what, e.Code, e.Reason)
		}
	}
	_, err = bob.Download(ctx, media.MediaID, io.Discard, courier.DownloadOptions{})
	held("download", err)
	_, err = bob.GetMedia(ctx, media.MediaID)
	held("get", err)
	_, err = alice.SendPeerMessage(ctx, "bob", media.FileMessage(), courier.SendOptions{Offline: true})
	held("send", err)
	// Quarantined content stays so for anyone who uploads it again.
	_, err = bob.Upload(ctx, bytes.NewReader(data), int64(len(data)), courier.UploadOptions{FileName: "again.bin"})
	held("upload", err)
}
