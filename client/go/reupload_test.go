// The header-only re-upload: content this user stored before completes without its
// bytes; anyone else's upload of it sends them (as client/rust/tests/reupload.rs).

package courier_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"sync"
	"testing"

	courier "github.com/courier-rtm/courier/client/go"
	"github.com/courier-rtm/courier/client/go/internal/testkit"
)

func TestARepeatedUploadDoesNotResend(t *testing.T) {
	server := testkit.Start(t)
	alice := dial(t, server, "alice")
	bob := dial(t, server, "bob")
	ctx := context.Background()
	data := testkit.Pattern(4*mib, 8)
	digest := sha256.Sum256(data)
	path := filepath.Join(t.TempDir(), "movie.bin")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	received := func() int64 { return server.Metric(t, "courier_upload_bytes_total") }

	before := received()
	first, err := alice.UploadFile(ctx, path, courier.UploadOptions{})
	if err != nil {
		t.Fatalf("first upload: %v", err)
	}
	if sent := received() - before; sent != int64(len(data)) {
		t.Fatalf("the first upload sent %d bytes, not %d", sent, len(data))
	}

	// Alice again, from the file and from memory: no byte is sent, a new media ID,
	// and the progress still reaches the total.
	before = received()
	var mu sync.Mutex
	var last courier.Progress
	again, err := alice.UploadFile(ctx, path, courier.UploadOptions{OnProgress: func(p courier.Progress) {
		mu.Lock()
		last = p
		mu.Unlock()
	}})
	if err != nil {
		t.Fatalf("re-upload of the file: %v", err)
	}
	memory := bytes.NewReader(data)
	fromMemory, err := alice.Upload(ctx, memory, int64(len(data)), courier.UploadOptions{FileName: "copy.bin"})
	if err != nil {
		t.Fatalf("re-upload from memory: %v", err)
	}
	if sent := received() - before; sent != 0 {
		t.Fatalf("a re-upload sent %d bytes", sent)
	}
	mu.Lock()
	if want := (courier.Progress{Done: int64(len(data)), Total: int64(len(data))}); last != want {
		t.Errorf("the re-upload's last progress is %+v, not %+v", last, want)
	}
	mu.Unlock()
	if again.MediaID == first.MediaID || fromMemory.MediaID == first.MediaID || again.MediaID == fromMemory.MediaID {
		t.Errorf("re-uploads reuse a media ID: %s, %s, %s", first.MediaID, again.MediaID, fromMemory.MediaID)
	}
	if fromMemory.FileName != "copy.bin" {
		t.Errorf("the copy is named %q", fromMemory.FileName)
	}
	if memory.Len() != 0 {
		t.Errorf("the in-memory reader still holds %d bytes after its re-upload", memory.Len())
	}
	for _, media := range []courier.Media{again, fromMemory} {
		if media.SHA256 != digest || media.Size != int64(len(data)) {
			t.Errorf("%s: SHA-256 %s, size %d", media.MediaID, media.SHA256Hex(), media.Size)
		}
	}
	// The offer and the upload are one transfer: a client with one slot re-uploads.
	single := dial(t, server, "alice", courier.WithMaxTransfers(1))
	if _, err := single.Upload(ctx, bytes.NewReader(data), int64(len(data)), courier.UploadOptions{FileName: "one.bin"}); err != nil {
		t.Fatalf("re-upload with one slot: %v", err)
	}
	if sent := received() - before; sent != 0 {
		t.Fatalf("a re-upload sent %d bytes", sent)
	}
	var downloaded bytes.Buffer
	if _, err := alice.Download(ctx, again.MediaID, &downloaded, courier.DownloadOptions{}); err != nil {
		t.Fatalf("download: %v", err)
	}
	if !bytes.Equal(downloaded.Bytes(), data) {
		t.Error("the re-uploaded media's bytes differ")
	}

	// Bob's upload of the same content sends every byte.
	before = received()
	bobs, err := bob.UploadFile(ctx, path, courier.UploadOptions{})
	if err != nil {
		t.Fatalf("bob's upload: %v", err)
	}
	if sent := received() - before; sent != int64(len(data)) {
		t.Fatalf("another user's upload sent %d bytes, not %d", sent, len(data))
	}
	if bobs.SHA256 != digest {
		t.Errorf("bob's upload has SHA-256 %s", bobs.SHA256Hex())
	}
}
