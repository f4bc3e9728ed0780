// Unit tests of the pieces of resumable uploads and idempotent sends that need no
// server: the CRC32C, the state file's matching, and generated client message IDs.

package courier

import (
	"crypto/sha256"
	"hash/crc32"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

func TestCRC32CIsCastagnoli(t *testing.T) {
	// The check value of RFC 3720 (iSCSI).
	if got := crc32.Checksum([]byte("123456789"), castagnoli); got != 0xE3069283 {
		t.Fatalf("crc32c = %#x", got)
	}
}

func TestGeneratedClientMessageIDs(t *testing.T) {
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	seen := map[string]bool{}
	for range 100 {
		id := clientMessageID("")
		if !hex32.MatchString(id) || seen[id] {
			t.Fatalf("id %q (seen: %v)", id, seen[id])
		}
		seen[id] = true
	}
	if clientMessageID("mine") != "mine" {
		t.Fatal("the caller's ID was not kept")
	}
}

func TestUploadStateMatchesServerSizeAndDigest(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "report.bin")
	if err := os.WriteFile(path, []byte("some bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &Client{serverURL: "http://s:1"}
	r := &resumable{c: c, path: path, statePath: path + UploadStateSuffix, size: 10}
	r.digest = sha256.Sum256([]byte("some bytes"))
	if r.saved() != "" {
		t.Fatal("a state file out of nothing")
	}
	if err := r.save("u1", 4096); err != nil {
		t.Fatal(err)
	}
	if got := r.saved(); got != "u1" {
		t.Fatalf("saved() = %q", got)
	}
	other := &resumable{c: &Client{serverURL: "http://t:1"}, path: path, statePath: r.statePath, size: 10, digest: r.digest}
	if other.saved() != "" {
		t.Fatal("another server's upload was resumed")
	}
	changed := &resumable{c: c, path: path, statePath: r.statePath, size: 10, digest: sha256.Sum256([]byte("other byte"))}
	if changed.saved() != "" {
		t.Fatal("a changed file's upload was resumed")
	}
	if _, err := os.Stat(r.statePath + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temporary state file left: %v", err)
	}
}
