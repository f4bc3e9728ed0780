// The commands that came with issues 29 and 30 (url, delete), run against a live
// server as the matrix runs them, their lines checked against docs/interop.md.

package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/courier-rtm/courier/client/go/internal/testkit"
)

// runAs runs the command line as user against server and returns its exit status and
// its stdout lines, parsed.
func runAs(t *testing.T, server *testkit.Server, user string, args ...string) (int, []map[string]any) {
	t.Helper()
	return runAt(t, server.URL(), testkit.Token(user), args...)
}

// runAt runs the command line with COURIER_SERVER and COURIER_TOKEN set to serverURL
// and token, and returns its exit status and its stdout lines, parsed.
func runAt(t *testing.T, serverURL, token string, args ...string) (int, []map[string]any) {
	t.Helper()
	t.Setenv("COURIER_SERVER", serverURL)
	t.Setenv("COURIER_TOKEN", token)
	reader, writer, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = writer
	captured := make(chan []byte)
	go func() {
		out, _ := io.ReadAll(reader)
		captured <- out
	}()
	code := run(args)
	os.Stdout = stdout
	writer.Close()
	var lines []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(<-captured)), "\n") {
		var value map[string]any
		if err := json.Unmarshal([]byte(line), &value); err != nil {
			t.Fatalf("%v printed %q: %v", args, line, err)
		}
		lines = append(lines, value)
	}
	return code, lines
}

// errorOf is the code and reason of an error line.
func errorOf(t *testing.T, line map[string]any) (string, string) {
	t.Helper()
	e, ok := line["error"].(map[string]any)
	if !ok {
		t.Fatalf("not an error line: %v", line)
	}
	return e["code"].(string), e["reason"].(string)
}

// uploaded is the media ID of a file of data that user uploaded with `upload`.
func uploaded(t *testing.T, server *testkit.Server, user string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notes.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	code, lines := runAs(t, server, user, "upload", path)
	if code != 0 {
		t.Fatalf("upload: %d %v", code, lines)
	}
	return lines[0]["media_id"].(string)
}

func TestURLPrintsALinkThatHTTPFetches(t *testing.T) {
	server := testkit.Start(t)
	data := testkit.Pattern(5000, 3)
	id := uploaded(t, server, "alice", data)
	code, lines := runAs(t, server, "bob", "url", id, "--ttl", "60s")
	if code != 0 {
		t.Fatalf("url: %d %v", code, lines)
	}
	// RFC 3339 in UTC, whole seconds, within the 60 s asked for.
	stamp, _ := lines[0]["expire_time"].(string)
	expires, err := time.Parse(time.RFC3339, stamp)
	if err != nil || !strings.HasSuffix(stamp, "Z") || strings.Contains(stamp, ".") || time.Until(expires) > 61*time.Second {
		t.Fatalf("expire_time %q: %v", stamp, err)
	}
	response, err := http.Get(lines[0]["url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(response.Body)
	response.Body.Close()
	if response.StatusCode != http.StatusOK || string(body) != string(data) {
		t.Fatalf("GET of the link: %s, %d bytes", response.Status, len(body))
	}
	code, lines = runAs(t, server, "bob", "url", id, "--max-edge", "96")
	if c, reason := errorOf(t, lines[0]); code != 1 || c != "FAILED_PRECONDITION" || reason != "NOT_AN_IMAGE" {
		t.Fatalf("url --max-edge of a file: %d %v", code, lines)
	}
}

func TestDeletePrintsItsLineAndTheMediaIsGone(t *testing.T) {
	server := testkit.Start(t)
	id := uploaded(t, server, "alice", testkit.Pattern(5000, 4))
	// The reference line, twice (deleting again answers as the first time).
	for range 2 {
		code, lines := runAs(t, server, "alice", "delete", id)
		if code != 0 || lines[0]["media_id"] != id || lines[0]["deleted"] != true || len(lines[0]) != 2 {
			t.Fatalf("delete: %d %v", code, lines)
		}
	}
	out := filepath.Join(t.TempDir(), "back.bin")
	code, lines := runAs(t, server, "bob", "download", id, "-o", out)
	if c, reason := errorOf(t, lines[0]); code != 1 || c != "NOT_FOUND" || reason != "MEDIA_DELETED" {
		t.Fatalf("download of a deleted media: %d %v", code, lines)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("something is at %s: %v", out, err)
	}
	code, lines = runAs(t, server, "alice", "send", "--to", "bob", "--media-id", id)
	if c, reason := errorOf(t, lines[0]); code != 1 || c != "NOT_FOUND" || reason != "MEDIA_DELETED" {
		t.Fatalf("send --media-id of a deleted media: %d %v", code, lines)
	}
	code, lines = runAs(t, server, "bob", "delete", "0123456789abcdef0123456789abcdef")
	if c, reason := errorOf(t, lines[0]); code != 1 || c != "NOT_FOUND" || reason != "" {
		t.Fatalf("delete of an unknown media: %d %v", code, lines)
	}
}
