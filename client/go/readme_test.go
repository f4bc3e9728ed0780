// The README's examples, as written: the first is built and run against a live
// server, the second and third (fragments: receiving, several replicas) are compiled
// inside functions.

package courier_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	courier "github.com/courier-rtm/courier/client/go"
	"github.com/courier-rtm/courier/client/go/internal/testkit"
)

// readmeBlocks are the ```go blocks of README.md, in order.
func readmeBlocks(t *testing.T) []string {
	t.Helper()
	text, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(text), -1) {
		blocks = append(blocks, m[1])
	}
	if len(blocks) < 3 {
		t.Fatalf("README.md has %d go blocks, expected 3", len(blocks))
	}
	return blocks
}

func TestReadmeExample(t *testing.T) {
	blocks := readmeBlocks(t)
	// Inside the module, so that it builds against this very package; a folder
	// starting with "_" is ignored by ./... patterns.
	src, err := os.MkdirTemp(".", "_readme-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(src) })
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(blocks[0]), 0o644); err != nil {
		t.Fatal(err)
	}
	receive := "package receive\n\nimport (\n\t\"context\"\n\t\"log\"\n\n\tcourier \"github.com/courier-rtm/courier/client/go\"\n)\n\n" +
		"func receive(ctx context.Context, bob *courier.Client) {\n" + blocks[1] + "}\n\nvar _ = receive\n"
	if err := os.MkdirAll(filepath.Join(src, "receive"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "receive", "receive.go"), []byte(receive), 0o644); err != nil {
		t.Fatal(err)
	}
	replicas := "package receive\n\nimport (\n\t\"context\"\n\t\"log\"\n\n\tcourier \"github.com/courier-rtm/courier/client/go\"\n)\n\n" +
		"func replicas(ctx context.Context, token string) {\n" + blocks[2] + "}\n\nvar _ = replicas\n"
	if err := os.WriteFile(filepath.Join(src, "receive", "replicas.go"), []byte(replicas), 0o644); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	bin := filepath.Join(work, "readme-example")
	build := exec.Command("go", "build", "-o", bin, "./"+src)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the README example does not build: %v\n%s", err, out)
	}
	if out, err := exec.Command("go", "vet", "./"+src+"/receive").CombinedOutput(); err != nil {
		t.Fatalf("the README's receiving or replicas fragment does not compile: %v\n%s", err, out)
	}

	server := testkit.Start(t)
	picture := testkit.PNG(40, 30)
	if err := os.WriteFile(filepath.Join(work, "cat.png"), picture, 0o644); err != nil {
		t.Fatal(err)
	}
	run := exec.Command(bin)
	run.Dir = work
	run.Env = append(os.Environ(), "COURIER_SERVER="+server.URL(), "COURIER_TOKEN="+testkit.Token("alice"))
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("the README example failed: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "sent cat.png (40x30) to bob: cached" {
		t.Fatalf("the README example printed %q", got)
	}
	// bob gets the picture when he comes online, and can download it.
	bob := dial(t, server, "bob")
	feed := bob.Subscribe(context.Background())
	t.Cleanup(feed.Close)
	count, before := ready(t, feed)
	if count != 1 || len(before) != 1 {
		t.Fatalf("bob found %d offline messages", count)
	}
	image, ok := before[0].Message.(courier.ImageMessage)
	if !ok || before[0].From != "alice" || image.FileName != "cat.png" {
		t.Fatalf("bob found %+v", before[0])
	}
	var got bytes.Buffer
	if _, err := bob.Download(context.Background(), image.MediaID, &got, courier.DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), picture) {
		t.Fatal("bob's download differs from cat.png")
	}
}
