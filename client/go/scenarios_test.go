// The client scenarios of tests/scenarios.md, under their names, run through the Go
// client against real courier-server processes:
// go test -run 'TestScenarios/upload_with_progress'. The first seven are here;
// typed_errors is in typed_errors_test.go, delete_media (13) in deletion_test.go,
// media_url (14) in media_url_test.go, three_replicas (15) in replicas_test.go.

package courier_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"

	courier "github.com/courier-rtm/courier/client/go"
	"github.com/courier-rtm/courier/client/go/internal/testkit"
)

func TestScenarios(t *testing.T) {
	t.Run("upload_with_progress", uploadWithProgress)
	t.Run("cancel_mid_upload", cancelMidUpload)
	t.Run("download_to_file", downloadToFile)
	t.Run("download_to_memory", downloadToMemory)
	t.Run("image_to_peer", imageToPeer)
	t.Run("file_to_channel", fileToChannel)
	t.Run("offline_cached_then_delivered", offlineCachedThenDelivered)
	t.Run("typed_errors", typedErrors)
	t.Run("delete_media", deleteMedia)
	t.Run("media_url", mediaURL)
	t.Run("three_replicas", threeReplicas)
}

func uploadWithProgress(t *testing.T) {
	server := testkit.Start(t)
	alice := dial(t, server, "alice")
	path := filepath.Join(t.TempDir(), "report.bin")
	data := testkit.Pattern(5*mib, 1)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []courier.Progress
	// The first report waits until the test has looked at the running transfer.
	gate := make(chan struct{})
	var once sync.Once
	upload, err := alice.StartUploadFile(context.Background(), path, courier.UploadOptions{
		OnProgress: func(p courier.Progress) {
			once.Do(func() { <-gate })
			mu.Lock()
			seen = append(seen, p)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// check: the call returns a request ID at once, before the upload completes.
	if upload.RequestID() == 0 {
		t.Fatal("no request ID")
	}
	select {
	case <-upload.Done():
		t.Fatal("the upload completed before the call returned")
	default:
	}
	close(gate)
	media, err := upload.Wait()
	if err != nil {
		t.Fatal(err)
	}
	// check: done never decreases, every total is 5 MiB, the last done is the total.
	mu.Lock()
	defer mu.Unlock()
	if len(seen) < 2 {
		t.Fatalf("only %d progress reports", len(seen))
	}
	for i, p := range seen {
		if p.Total != 5*mib {
			t.Fatalf("report %d has total %d", i, p.Total)
		}
		if i > 0 && p.Done < seen[i-1].Done {
			t.Fatalf("progress went backwards: %v then %v", seen[i-1], p)
		}
	}
	if last := seen[len(seen)-1]; last.Done != last.Total {
		t.Fatalf("the last report is %v", last)
	}
	// check: the result is the record: size, name, kind FILE, the file's SHA-256.
	if media.Size != 5*mib || media.FileName != "report.bin" || media.Kind != courier.File {
		t.Fatalf("unexpected record %+v", media)
	}
	if media.SHA256 != sha256.Sum256(data) {
		t.Fatalf("SHA-256 %s is not the file's", media.SHA256Hex())
	}
}

func cancelMidUpload(t *testing.T) {
	server := testkit.Start(t)
	alice := dial(t, server, "alice")
	// A 20 MiB source that yields only what the test writes into it.
	source, feed := io.Pipe()
	defer feed.CloseWithError(io.ErrClosedPipe)
	passed := make(chan struct{})
	var once sync.Once
	upload, err := alice.StartUpload(context.Background(), source, 20*mib, courier.UploadOptions{
		FileName: "big.bin",
		OnProgress: func(p courier.Progress) {
			if p.Done > mib {
				once.Do(func() { close(passed) })
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	id := upload.RequestID()
	go func() {
		for chunk := range 8 {
			if _, err := feed.Write(testkit.Pattern(256*1024, byte(chunk))); err != nil {
				return
			}
		}
	}()
	within(t, passed, "progress past 1 MiB")
	server.WaitInFlight(t, 1)
	if err := alice.Cancel(id); err != nil {
		t.Fatalf("cancel a running transfer: %v", err)
	}
	// check: awaiting it fails with "cancelled".
	_, err = upload.Wait()
	e := expectKind(t, err, courier.ErrCancelled)
	if e.Code != codes.Canceled {
		t.Fatalf("code %v", e.Code)
	}
	// check: nothing stored, and the slot is free at once.
	server.WaitInFlight(t, 0)
	server.WaitStoredEmpty(t)
	next := testkit.Pattern(1000, 2)
	media, err := alice.Upload(context.Background(), bytes.NewReader(next), 1000, courier.UploadOptions{FileName: "next.bin"})
	if err != nil || media.Size != 1000 {
		t.Fatalf("the slot is not free: %v %+v", err, media)
	}
	// The store inspection does see what an upload keeps.
	if stored := server.Stored(t); len(stored) == 0 {
		t.Fatal("the store looks empty after a complete upload")
	}
	// check: cancelling the same request ID again fails with "no such transfer".
	expectKind(t, alice.Cancel(id), courier.ErrNoSuchTransfer)
}

func downloadToFile(t *testing.T) {
	server := testkit.Start(t)
	alice := dial(t, server, "alice")
	ctx := context.Background()
	dir := t.TempDir()
	data := testkit.Pattern(3*mib, 3)
	media, err := alice.Upload(ctx, bytes.NewReader(data), int64(len(data)), courier.UploadOptions{FileName: "doc.bin"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "doc.bin")
	got, err := alice.DownloadFile(ctx, media.MediaID, path, courier.DownloadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// check: the file is byte-identical, and no partial file remains beside it.
	if !reflect.DeepEqual(got, media) {
		t.Fatalf("record %+v, uploaded %+v", got, media)
	}
	expectFile(t, path, data)
	expectFiles(t, dir, "doc.bin")

	// cancelled: neither the path nor a partial file is left.
	big := testkit.Pattern(30*mib, 4)
	bigMedia, err := alice.Upload(ctx, bytes.NewReader(big), int64(len(big)), courier.UploadOptions{FileName: "big.bin"})
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "big.bin")
	partial := courier.PartialPath(target, bigMedia.MediaID)
	if want := filepath.Join(dir, ".big.bin."+bigMedia.MediaID+".part"); partial != want {
		t.Fatalf("partial path %s, want %s", partial, want)
	}
	// The first report with data holds the download until the test has cancelled it.
	moved, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	download, err := alice.StartDownloadFile(ctx, bigMedia.MediaID, target, courier.DownloadOptions{
		OnProgress: func(p courier.Progress) {
			if p.Done > 0 {
				once.Do(func() { close(moved); <-release })
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	within(t, moved, "the first downloaded bytes")
	download.Cancel()
	close(release)
	_, err = download.Wait()
	expectKind(t, err, courier.ErrCancelled)
	expectFiles(t, dir, "doc.bin")

	// resumed: the first MiB is already in the partial file; only the rest is sent.
	if err := os.WriteFile(partial, big[:mib], 0o644); err != nil {
		t.Fatal(err)
	}
	server.WaitInFlight(t, 0)
	before := server.Metric(t, "courier_download_bytes_total")
	if _, err := alice.DownloadFile(ctx, bigMedia.MediaID, target, courier.DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	if sent := server.Metric(t, "courier_download_bytes_total") - before; sent != 30*mib-mib {
		t.Fatalf("the server sent %d bytes, expected %d", sent, 30*mib-mib)
	}
	expectFile(t, target, big)
	expectFiles(t, dir, "big.bin", "doc.bin")

	// corrupt partial: the integrity check fails, the partial file is removed, and
	// the next download succeeds.
	if err := os.Remove(target); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(partial, make([]byte, mib), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = alice.DownloadFile(ctx, bigMedia.MediaID, target, courier.DownloadOptions{})
	if e := expectKind(t, err, courier.ErrIntegrity); e.Code != codes.DataLoss {
		t.Fatalf("code %v", e.Code)
	}
	expectFiles(t, dir, "doc.bin")
	if _, err := alice.DownloadFile(ctx, bigMedia.MediaID, target, courier.DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	expectFile(t, target, big)
}

func downloadToMemory(t *testing.T) {
	server := testkit.Start(t)
	alice := dial(t, server, "alice")
	ctx := context.Background()
	data := testkit.Pattern(200*1024, 5)
	media, err := alice.Upload(ctx, bytes.NewReader(data), int64(len(data)), courier.UploadOptions{FileName: "notes.bin"})
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	var last courier.Progress
	record, err := alice.Download(ctx, media.MediaID, &got, courier.DownloadOptions{
		OnProgress: func(p courier.Progress) { last = p },
	})
	if err != nil {
		t.Fatal(err)
	}
	// check: the bytes are identical, the record matches, progress reached the total.
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatal("the downloaded bytes differ")
	}
	if !reflect.DeepEqual(record, media) {
		t.Fatalf("record %+v, uploaded %+v", record, media)
	}
	if last != (courier.Progress{Done: int64(len(data)), Total: int64(len(data))}) {
		t.Fatalf("the last progress is %+v", last)
	}
}

func imageToPeer(t *testing.T) {
	server := testkit.Start(t)
	ctx := context.Background()
	bob := dial(t, server, "bob")
	feed := subscribe(t, bob)
	alice := dial(t, server, "alice")
	picture := testkit.PNG(40, 30)
	media, err := alice.Upload(ctx, bytes.NewReader(picture), int64(len(picture)),
		courier.UploadOptions{FileName: "cat.png", Kind: courier.Image})
	if err != nil {
		t.Fatal(err)
	}
	fromID, err := alice.ImageMessageByMediaID(ctx, media.MediaID)
	if err != nil {
		t.Fatal(err)
	}
	for _, message := range []courier.ImageMessage{media.ImageMessage(), {MediaID: fromID.MediaID}} {
		receipt, err := alice.SendPeerMessage(ctx, "bob", message, courier.SendOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if receipt.Delivery != courier.Delivered {
			t.Fatalf("delivery %v", receipt.Delivery)
		}
		// check: an image message from peer alice, not offline, with the record's
		// media ID, name, size and 40x30.
		got := nextMessage(t, feed)
		if got.From != "alice" || got.Channel != "" || got.Offline || got.MessageID != receipt.MessageID {
			t.Fatalf("unexpected message %+v", got)
		}
		image, ok := got.Message.(courier.ImageMessage)
		if !ok {
			t.Fatalf("not an image message: %#v", got.Message)
		}
		if image.MediaID != media.MediaID || image.FileName != "cat.png" || image.Size != media.Size ||
			image.Width != 40 || image.Height != 30 {
			t.Fatalf("unexpected image message %+v", image)
		}
		// check: bob downloads the media ID and gets the PNG's bytes.
		var downloaded bytes.Buffer
		if _, err := bob.Download(ctx, image.MediaID, &downloaded, courier.DownloadOptions{}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(downloaded.Bytes(), picture) {
			t.Fatal("bob's download differs from the PNG")
		}
	}
}

func fileToChannel(t *testing.T) {
	server := testkit.Start(t)
	ctx := context.Background()
	alice := dial(t, server, "alice")
	bob := dial(t, server, "bob")
	for _, client := range []*courier.Client{alice, bob} {
		if err := client.JoinChannel(ctx, "team"); err != nil {
			t.Fatal(err)
		}
	}
	members, err := bob.ChannelMembers(ctx, "team")
	if err != nil || !slices.Equal(members, []string{"alice", "bob"}) {
		t.Fatalf("members %v, %v", members, err)
	}
	bobFeed := subscribe(t, bob)
	aliceFeed := subscribe(t, alice)
	data := testkit.Pattern(70_000, 6)
	media, err := alice.Upload(ctx, bytes.NewReader(data), int64(len(data)), courier.UploadOptions{FileName: "plan.pdf"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendChannelMessage(ctx, "team", media.FileMessage()); err != nil {
		t.Fatal(err)
	}
	// check: bob receives a file message from alice in team with ID, name and size.
	got := nextMessage(t, bobFeed)
	if got.From != "alice" || got.Channel != "team" {
		t.Fatalf("unexpected message %+v", got)
	}
	file, ok := got.Message.(courier.FileMessage)
	if !ok {
		t.Fatalf("not a file message: %#v", got.Message)
	}
	if file.MediaID != media.MediaID || file.FileName != "plan.pdf" || file.Size != 70_000 {
		t.Fatalf("unexpected file message %+v", file)
	}
	// check: alice's own feed does not get it: the next thing it sees is a peer
	// message sent after it.
	marker, err := bob.SendPeerMessage(ctx, "alice", courier.Text("marker"), courier.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if next := nextMessage(t, aliceFeed); next.MessageID != marker.MessageID {
		t.Fatalf("alice received %+v before the marker", next)
	}
	if err := bob.LeaveChannel(ctx, "team"); err != nil {
		t.Fatal(err)
	}
	members, err = alice.ChannelMembers(ctx, "team")
	if err != nil || !slices.Equal(members, []string{"alice"}) {
		t.Fatalf("members after bob left: %v, %v", members, err)
	}
}

func offlineCachedThenDelivered(t *testing.T) {
	server := testkit.Start(t)
	ctx := context.Background()
	alice := dial(t, server, "alice")
	// check: the first send reports CACHED; the second fails with "peer unreachable".
	cached, err := alice.SendPeerMessage(ctx, "bob", courier.Text("while you were out"), courier.SendOptions{Offline: true})
	if err != nil || cached.Delivery != courier.Cached {
		t.Fatalf("offline send: %+v, %v", cached, err)
	}
	lost, err := alice.SendPeerMessage(ctx, "bob", courier.Text("lost"), courier.SendOptions{})
	expectKind(t, err, courier.ErrPeerUnreachable)
	if lost.Delivery != courier.PeerUnreachable || lost.MessageID == "" {
		t.Fatalf("the unreachable receipt is %+v", lost)
	}
	// check: the cached text arrives first, offline, from alice; then ready says 1.
	bob := dial(t, server, "bob")
	feed := bob.Subscribe(ctx)
	t.Cleanup(feed.Close)
	count, before := ready(t, feed)
	if count != 1 || len(before) != 1 {
		t.Fatalf("ready counted %d, %d messages came before it", count, len(before))
	}
	got := before[0]
	if !got.Offline || got.From != "alice" || got.MessageID != cached.MessageID ||
		got.Message != courier.Text("while you were out") {
		t.Fatalf("unexpected offline message %+v", got)
	}
	online, err := alice.QueryOnlineStatus(ctx, "bob", "carol")
	want := []courier.OnlineStatus{{UserID: "bob", Online: true}, {UserID: "carol", Online: false}}
	if err != nil || !slices.Equal(online, want) {
		t.Fatalf("online status %v, %v", online, err)
	}
}

// expectFile fails unless the file at path holds want.
func expectFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from what was uploaded (%d bytes, want %d)", path, len(got), len(want))
	}
}

// expectFiles fails unless dir holds exactly the files named (sorted).
func expectFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, entry := range entries {
		got = append(got, entry.Name())
	}
	if !slices.Equal(got, names) {
		t.Fatalf("%s holds %v, expected %v", dir, got, names)
	}
}
