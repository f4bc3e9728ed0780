// Safe local file names for received media: the sender chooses the file name, so it
// must never become a path as it is. No separators or control characters, no hidden
// or special names, and never an existing file.

package courier

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode"
)

// maxName is the longest name kept, in characters.
const maxName = 200

// SafeFileName is name made safe to create inside a folder: separators, colons and
// control characters become "_", leading dots and surrounding spaces are dropped, and
// a name left empty (or only of "_" and ".") becomes fallback.
func SafeFileName(name, fallback string) string {
	var b strings.Builder
	count := 0
	for _, c := range name {
		if count == maxName {
			break
		}
		if c == '/' || c == '\\' || c == ':' || unicode.IsControl(c) {
			c = '_'
		}
		b.WriteRune(c)
		count++
	}
	cleaned := strings.TrimLeft(strings.TrimSpace(b.String()), ".")
	if strings.Trim(cleaned, "_.") == "" {
		return fallback
	}
	return cleaned
}

// UniquePath is a path in dir for a received file called name (made safe with
// SafeFileName) that does not exist yet: name, then "stem (1).ext", "stem (2).ext", ...
func UniquePath(dir, name, fallback string) (string, error) {
	name = SafeFileName(name, fallback)
	candidate := filepath.Join(dir, name)
	if !exists(candidate) {
		return candidate, nil
	}
	stem, ext := name, ""
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		stem, ext = name[:i], name[i:]
	}
	for n := 1; n < 10_000; n++ {
		candidate = filepath.Join(dir, fmt.Sprintf("%s (%d)%s", stem, n, ext))
		if !exists(candidate) {
			return candidate, nil
		}
	}
	return "", localIO(fmt.Errorf("too many files named like %s in %s", name, dir), "no free file name")
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
