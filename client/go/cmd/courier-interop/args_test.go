package main

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestFlagsMayComeAnywhere(t *testing.T) {
	p, err := parse([]string{"--to", "bob", "--offline", "--text=hi there", "--json"}, specs["send"])
	if err != nil {
		t.Fatal(err)
	}
	if p.flags["to"] != "bob" || p.flags["text"] != "hi there" || !p.has("offline") || len(p.positional) != 0 {
		t.Fatalf("parsed %+v", p)
	}
	p, err = parse([]string{"cat.png", "--image"}, specs["upload"])
	if err != nil || !p.has("image") || !slices.Equal(p.positional, []string{"cat.png"}) {
		t.Fatalf("parsed %+v, %v", p, err)
	}
	p, err = parse([]string{"-o", "out.bin", "0123"}, specs["download"])
	if err != nil || p.flags["output"] != "out.bin" || !slices.Equal(p.positional, []string{"0123"}) {
		t.Fatalf("parsed %+v, %v", p, err)
	}
}

func TestBadCommandLinesAreUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--bogus"}, {"-x"}, {"--to"}, {"--offline=yes"}, {"--to", "a", "--to", "b"},
	} {
		_, err := parse(args, specs["send"])
		var usage usageError
		if !errors.As(err, &usage) {
			t.Errorf("%v: %v", args, err)
		}
	}
	for _, args := range [][]string{
		{"send", "--to", "bob"},
		{"send", "--to", "bob", "--channel", "c", "--text", "x"},
		{"send", "--to", "bob", "--text", "x", "--file", "f"},
		{"send", "--channel", "c", "--text", "x", "--offline"},
		{"upload"}, {"upload", "a", "b"}, {"download", "id"}, {"listen", "--count", "x"}, {"online"}, {"nope"},
		{"delete"}, {"delete", "a", "b"}, {"url"}, {"url", "id", "--max-edge", "-1"}, {"url", "id", "--ttl", "soon"},
		{"url", "id", "--ttl", "0s"},
	} {
		if code := run(args); code != 2 {
			t.Errorf("%v exited %d, expected 2", args, code)
		}
	}
}

// An empty --text is no usage error: the library refuses it before any call (so no
// server is needed here) and the command prints the contract's error line, exit 1.
func TestEmptyTextIsRefusedAsAnInvalidArgument(t *testing.T) {
	for _, args := range [][]string{
		{"send", "--to", "bob", "--text", ""},
		{"send", "--to", "bob", "--text="},
		{"send", "--channel", "lobby", "--text", ""},
	} {
		code, lines := runAt(t, "http://127.0.0.1:1", "any-token", args...)
		if code != 1 || len(lines) != 1 {
			t.Fatalf("%q: exit %d, %v", args, code, lines)
		}
		c, reason := errorOf(t, lines[0])
		message, _ := lines[0]["error"].(map[string]any)["message"].(string)
		if c != "INVALID_ARGUMENT" || reason != "" || !strings.Contains(message, "cannot be sent") {
			t.Errorf("%q: %v", args, lines[0])
		}
	}
}
