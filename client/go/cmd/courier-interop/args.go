// Command-line parsing in the shape of the reference (`courier --json`): flags may
// come before, between or after the positional arguments; a usage error exits 2.

package main

import (
	"fmt"
	"strconv"
	"strings"
)

// usageError is a malformed command line: exit status 2.
type usageError struct{ message string }

func (e usageError) Error() string { return e.message }

func usagef(format string, args ...any) error {
	return usageError{message: fmt.Sprintf(format, args...)}
}

// spec describes a command's flags: each takes a value unless it is in bools; aliases
// maps short names (-o) to long ones.
type spec struct {
	values  []string
	bools   []string
	aliases map[string]string
}

// parsed is a command line split into flags and positional arguments.
type parsed struct {
	flags      map[string]string
	positional []string
}

// global flags, accepted by every command.
var globalValues = []string{"server", "token"}
var globalBools = []string{"json"}

// parse splits args (after the command name) by s.
func parse(args []string, s spec) (parsed, error) {
	p := parsed{flags: map[string]string{}}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			p.positional = append(p.positional, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			p.positional = append(p.positional, arg)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if long, ok := s.aliases[name]; ok && !strings.HasPrefix(arg, "--") {
			name = long
		} else if !strings.HasPrefix(arg, "--") {
			return p, usagef("unknown flag %s", arg)
		}
		if _, dup := p.flags[name]; dup {
			return p, usagef("--%s given twice", name)
		}
		switch {
		case contains(s.bools, name) || contains(globalBools, name):
			if hasValue {
				return p, usagef("--%s takes no value", name)
			}
			p.flags[name] = "true"
		case contains(s.values, name) || contains(globalValues, name):
			if !hasValue {
				if i+1 >= len(args) {
					return p, usagef("--%s needs a value", name)
				}
				i++
				value = args[i]
			}
			p.flags[name] = value
		default:
			return p, usagef("unknown flag %s", arg)
		}
	}
	return p, nil
}

func contains(list []string, name string) bool {
	for _, item := range list {
		if item == name {
			return true
		}
	}
	return false
}

// has reports whether a flag was given.
func (p parsed) has(name string) bool { _, ok := p.flags[name]; return ok }

// exactly checks the number of positional arguments, named for the message.
func (p parsed) exactly(names ...string) error {
	if len(p.positional) < len(names) {
		return usagef("missing %s", strings.Join(names[len(p.positional):], " "))
	}
	if len(p.positional) > len(names) {
		return usagef("unexpected argument %q", p.positional[len(names)])
	}
	return nil
}

// count is the value of a flag that must be a positive integer, or 0 when absent.
func (p parsed) count(name string) (int, error) {
	value, ok := p.flags[name]
	if !ok {
		return 0, nil
	}
	n, err := strconv.Atoi(value)
	if err != nil || n < 0 {
		return 0, usagef("--%s needs a whole number, not %q", name, value)
	}
	return n, nil
}

// oneOf is the one flag of names that was given, "" for none, or a usage error for
// more than one.
func (p parsed) oneOf(names ...string) (string, error) {
	found := ""
	for _, name := range names {
		if p.has(name) {
			if found != "" {
				return "", usagef("--%s and --%s cannot be used together", found, name)
			}
			found = name
		}
	}
	return found, nil
}
