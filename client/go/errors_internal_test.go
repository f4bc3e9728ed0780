// Unit tests of the reason-to-kind mapping: every reason of the generated enum has a
// kind, and statuses with and without ErrorInfo map as documented.

package courier

import (
	"context"
	"errors"
	"os"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/courier-rtm/courier/client/go/internal/pb"
)

func TestEveryReasonHasAKind(t *testing.T) {
	for value, name := range pb.ErrorReason_name {
		reason := pb.ErrorReason(value)
		if reason == pb.ErrorReason_ERROR_REASON_UNSPECIFIED {
			continue
		}
		if reasonKinds[reason] == nil {
			t.Errorf("the reason %s has no kind in reasonKinds", name)
		}
	}
}

// withReason is a status error of code carrying an ErrorInfo of domain and reason.
func withReason(t *testing.T, code codes.Code, domain, reason string) error {
	t.Helper()
	st, err := status.New(code, "refused").WithDetails(&errdetails.ErrorInfo{Domain: domain, Reason: reason})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

func TestStatusesMapToKinds(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		err    error
		kind   error
		code   codes.Code
		reason string
	}{
		{"reason", withReason(t, codes.InvalidArgument, errorDomain, pb.ErrorReason_MEDIA_TOO_LARGE.String()),
			ErrTooLarge, codes.InvalidArgument, "MEDIA_TOO_LARGE"},
		{"reason over code", withReason(t, codes.ResourceExhausted, errorDomain, pb.ErrorReason_RATE_LIMITED.String()),
			ErrRateLimited, codes.ResourceExhausted, "RATE_LIMITED"},
		{"a hook's rejection", withReason(t, codes.FailedPrecondition, errorDomain, pb.ErrorReason_MEDIA_REJECTED.String()),
			ErrMediaRejected, codes.FailedPrecondition, "MEDIA_REJECTED"},
		{"held content", withReason(t, codes.FailedPrecondition, errorDomain, pb.ErrorReason_MEDIA_QUARANTINED.String()),
			ErrMediaQuarantined, codes.FailedPrecondition, "MEDIA_QUARANTINED"},
		{"deleted is its own kind of not found", withReason(t, codes.NotFound, errorDomain, pb.ErrorReason_MEDIA_DELETED.String()),
			ErrMediaDeleted, codes.NotFound, "MEDIA_DELETED"},
		{"unknown reason falls back on the code", withReason(t, codes.NotFound, errorDomain, "SOMETHING_NEW"),
			ErrNotFound, codes.NotFound, "SOMETHING_NEW"},
		{"another domain's reason is not ours", withReason(t, codes.InvalidArgument, "example.com", "MEDIA_TOO_LARGE"),
			ErrInvalidArgument, codes.InvalidArgument, ""},
		{"code only", status.Error(codes.Unauthenticated, "no"), ErrUnauthenticated, codes.Unauthenticated, ""},
		{"no kind", status.Error(codes.Internal, "oops"), nil, codes.Internal, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var e *Error
			if !errors.As(fromStatus(ctx, c.err), &e) {
				t.Fatalf("not an *Error: %v", c.err)
			}
			if e.Kind != c.kind || e.Code != c.code || e.Reason != c.reason {
				t.Fatalf("got kind %v code %v reason %q", e.Kind, e.Code, e.Reason)
			}
			if c.kind != nil && !errors.Is(e, c.kind) {
				t.Fatalf("errors.Is(%v, %v) is false", e, c.kind)
			}
			if status.Code(e) != c.code {
				t.Fatalf("status.Code says %v", status.Code(e))
			}
			if !errors.Is(e, c.err) && errors.Unwrap(e) != c.err {
				t.Fatal("the status is not the cause")
			}
		})
	}
}

func TestEndedContextsWin(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := fromStatus(ctx, status.Error(codes.Unavailable, "transport is closing"))
	if !errors.Is(err, ErrCancelled) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v", err)
	}
}

func TestNamesLoseTheirDanger(t *testing.T) {
	for name, want := range map[string]string{
		"cat.png":          "cat.png",
		"../../etc/passwd": "_.._etc_passwd",
		"a\\b\nc":          "a_b_c",
		"..":               "id",
		"":                 "id",
		".bashrc":          "bashrc",
		"/":                "id",
		"C:evil":           "C_evil",
	} {
		if got := SafeFileName(name, "id"); got != want {
			t.Errorf("SafeFileName(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestExistingFilesGetASuffix(t *testing.T) {
	dir := t.TempDir()
	for _, want := range []string{"cat.png", "cat (1).png", "cat (2).png"} {
		path, err := UniquePath(dir, "cat.png", "x")
		if err != nil {
			t.Fatal(err)
		}
		if path != dir+"/"+want {
			t.Fatalf("got %s, want %s", path, want)
		}
		if err := writeFile(path); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMediaIDsAreChecked(t *testing.T) {
	for _, id := range []string{"", "../etc/passwd", "0123456789ABCDEF0123456789abcdef", "0123456789abcdef0123456789abcde"} {
		if !errors.Is(checkMediaID(id), ErrInvalidArgument) {
			t.Errorf("%q passed", id)
		}
	}
	if err := checkMediaID("0123456789abcdef0123456789abcdef"); err != nil {
		t.Error(err)
	}
}

func writeFile(path string) error { return os.WriteFile(path, []byte("x"), 0o644) }

func TestUploadOffsetMismatchCarriesCommittedSize(t *testing.T) {
	st, err := status.New(codes.FailedPrecondition, "gap").WithDetails(&errdetails.ErrorInfo{
		Domain: errorDomain, Reason: pb.ErrorReason_UPLOAD_OFFSET_MISMATCH.String(),
		Metadata: map[string]string{"committed_size": "262144"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var e *Error
	if !errors.As(fromStatus(context.Background(), st.Err()), &e) || !errors.Is(e, ErrUploadOffsetMismatch) {
		t.Fatalf("got %v", e)
	}
	if e.Metadata["committed_size"] != "262144" {
		t.Fatalf("metadata %v", e.Metadata)
	}
	crc := fromStatus(context.Background(), withReason(t, codes.InvalidArgument, errorDomain, "CHECKSUM_MISMATCH"))
	if !errors.Is(crc, ErrChecksumMismatch) {
		t.Fatalf("got %v", crc)
	}
}
