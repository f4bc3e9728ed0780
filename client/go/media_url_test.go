// Scenario 14 of tests/scenarios.md, media_url (issue 29): a link from MediaURL that
// Go's own net/http fetches with no token, whole, by range, conditionally, as a
// thumbnail, and not after it expired.

package courier_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"image/jpeg"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	courier "github.com/courier-rtm/courier/client/go"
	"github.com/courier-rtm/courier/client/go/internal/testkit"
)

// get is a plain HTTP GET of url with extra headers: the response and its body.
func get(t *testing.T, url string, headers map[string]string) (*http.Response, []byte) {
	t.Helper()
	request, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, value := range headers {
		request.Header.Set(name, value)
	}
	client := http.Client{Timeout: 10 * time.Second}
	response, err := client.Do(request)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return response, body
}

func mediaURL(t *testing.T) {
	ctx := context.Background()
	server := testkit.Start(t)
	alice := dial(t, server, "alice")
	data := testkit.Pattern(300*1024, 14)
	file, err := alice.Upload(ctx, bytes.NewReader(data), int64(len(data)), courier.UploadOptions{FileName: "data.bin"})
	if err != nil {
		t.Fatal(err)
	}
	picture := testkit.PNG(200, 100)
	image, err := alice.Upload(ctx, bytes.NewReader(picture), int64(len(picture)), courier.UploadOptions{FileName: "wide.png", Kind: courier.Image})
	if err != nil {
		t.Fatal(err)
	}

	// check: an http:// link on the server's address, expiring within 5 minutes,
	// that a GET without a token answers whole, with the ETag and nosniff.
	minted := time.Now()
	link, expires, err := alice.MediaURL(ctx, file.MediaID, courier.MediaURLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(link, "http://"+server.Addr+"/") {
		t.Fatalf("the link %q is not on %s", link, server.Addr)
	}
	if expires.Before(minted) || expires.After(minted.Add(5*time.Minute+2*time.Second)) {
		t.Fatalf("the link expires at %v, minted at %v", expires, minted)
	}
	response, body := get(t, link, nil)
	digest := sha256.Sum256(data)
	etag := `"` + hex.EncodeToString(digest[:]) + `"`
	if response.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("GET: %s, %d bytes", response.Status, len(body))
	}
	if got := response.Header.Get("ETag"); got != etag {
		t.Fatalf("ETag %q, expected %q", got, etag)
	}
	if got := response.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Fatalf("X-Content-Type-Options %q", got)
	}

	// check: a single range answers 206 with exactly that slice.
	response, body = get(t, link, map[string]string{"Range": "bytes=262000-270000"})
	if response.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[262000:270001]) {
		t.Fatalf("range: %s, %d bytes", response.Status, len(body))
	}
	if got := response.Header.Get("Content-Range"); got != "bytes 262000-270000/307200" {
		t.Fatalf("Content-Range %q", got)
	}

	// check: If-None-Match with the ETag answers 304.
	if response, _ = get(t, link, map[string]string{"If-None-Match": etag}); response.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match: %s", response.Status)
	}

	// check: MaxEdge 90 links to the 96-pixel thumbnail; a file has none; an unknown
	// ID is not found.
	thumb, _, err := alice.MediaURL(ctx, image.MediaID, courier.MediaURLOptions{MaxEdge: 90})
	if err != nil {
		t.Fatal(err)
	}
	response, body = get(t, thumb, nil)
	if response.StatusCode != http.StatusOK || response.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("thumbnail: %s, %q", response.Status, response.Header.Get("Content-Type"))
	}
	config, err := jpeg.DecodeConfig(bytes.NewReader(body))
	if err != nil || config.Width != 96 || config.Height != 48 {
		t.Fatalf("thumbnail %dx%d, %v", config.Width, config.Height, err)
	}
	_, _, err = alice.MediaURL(ctx, file.MediaID, courier.MediaURLOptions{MaxEdge: 90})
	if e := expectKind(t, err, courier.ErrNotAnImage); e.Code != codes.FailedPrecondition || e.Reason != "NOT_AN_IMAGE" {
		t.Fatalf("thumbnail of a file: code %v reason %q", e.Code, e.Reason)
	}
	_, _, err = alice.MediaURL(ctx, "0123456789abcdef0123456789abcdef", courier.MediaURLOptions{})
	expectKind(t, err, courier.ErrNotFound)
	_, _, err = alice.MediaURL(ctx, file.MediaID, courier.MediaURLOptions{Lifetime: -time.Second})
	expectKind(t, err, courier.ErrInvalidArgument)

	// check: a link of 1 s answers 410 once it has expired.
	short, expires, err := alice.MediaURL(ctx, file.MediaID, courier.MediaURLOptions{Lifetime: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(expires) + 1100*time.Millisecond)
	if response, _ = get(t, short, nil); response.StatusCode != http.StatusGone {
		t.Fatalf("an expired link: %s", response.Status)
	}

	// A deleted media's links end at once, and new ones are refused.
	if err := alice.DeleteMedia(ctx, file.MediaID); err != nil {
		t.Fatal(err)
	}
	if response, _ = get(t, link, nil); response.StatusCode == http.StatusOK {
		t.Fatalf("a deleted media's link: %s", response.Status)
	}
	_, _, err = alice.MediaURL(ctx, file.MediaID, courier.MediaURLOptions{})
	expectKind(t, err, courier.ErrMediaDeleted)
}
