// Thumbnails (as client/rust/tests/thumbnail.rs): the server's thumbnail at the
// rounded-up size, and refusals as typed errors.

package courier_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"image/jpeg"
	"testing"

	courier "github.com/courier-rtm/courier/client/go"
	"github.com/courier-rtm/courier/client/go/internal/testkit"
)

// bombPNG is a PNG declaring 100,000 x 100,000 pixels: a decompression bomb's header.
func bombPNG() []byte {
	out := bytes.Clone(testkit.PNG(1, 1))
	binary.BigEndian.PutUint32(out[16:], 100_000)
	binary.BigEndian.PutUint32(out[20:], 100_000)
	binary.BigEndian.PutUint32(out[29:], crc32.ChecksumIEEE(out[12:29]))
	return out
}

func TestThumbnailSizesAndRefusals(t *testing.T) {
	server := testkit.Start(t)
	alice := dial(t, server, "alice")
	ctx := context.Background()
	upload := func(data []byte, name string, kind courier.MediaKind) courier.Media {
		t.Helper()
		media, err := alice.Upload(ctx, bytes.NewReader(data), int64(len(data)), courier.UploadOptions{Kind: kind, FileName: name})
		if err != nil {
			t.Fatalf("upload %s: %v", name, err)
		}
		return media
	}
	wide := upload(testkit.PNG(400, 200), "wide.png", courier.Image)
	thumb, err := alice.Thumbnail(ctx, wide.MediaID, 100)
	if err != nil {
		t.Fatalf("thumbnail: %v", err)
	}
	if thumb.ContentType != "image/jpeg" || thumb.Width != 320 || thumb.Height != 160 {
		t.Fatalf("100 rounds up to 320: got %s %dx%d", thumb.ContentType, thumb.Width, thumb.Height)
	}
	config, err := jpeg.DecodeConfig(bytes.NewReader(thumb.Data))
	if err != nil || config.Width != 320 || config.Height != 160 {
		t.Fatalf("the thumbnail decodes as 320x160: %v %+v", err, config)
	}
	small := upload(testkit.PNG(50, 40), "small.png", courier.Image)
	if thumb, err := alice.Thumbnail(ctx, small.MediaID, 640); err != nil || thumb.Width != 50 || thumb.Height != 40 {
		t.Fatalf("not enlarged: %v %dx%d", err, thumb.Width, thumb.Height)
	}

	text := upload([]byte("no picture here"), "notes.txt", courier.File)
	_, err = alice.Thumbnail(ctx, text.MediaID, 96)
	expectKind(t, err, courier.ErrNotAnImage)
	bomb := upload(bombPNG(), "bomb.png", courier.Image)
	_, err = alice.Thumbnail(ctx, bomb.MediaID, 96)
	expectKind(t, err, courier.ErrImageRefused)
	_, err = alice.Thumbnail(ctx, wide.MediaID, 0)
	expectKind(t, err, courier.ErrInvalidArgument)
	_, err = alice.Thumbnail(ctx, "00112233445566778899aabbccddeeff", 96)
	expectKind(t, err, courier.ErrNotFound)
}
