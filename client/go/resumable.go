// Resumable uploads (MediaService.CreateUpload/WriteUpload/QueryUpload/CommitUpload):
// the file goes in parts of the server's part size, each with its CRC32C, so that an
// upload broken by a lost connection, a restarted server or a restarted process goes
// on from the bytes the server already holds.
//
// What survives a restart is a small JSON file beside the file,
// `<path>.courier-upload` (upload ID, server URL, the file's size and SHA-256, the part
// size), written after CreateUpload and removed once the upload is committed or
// cancelled. A later upload of the same file (same size and SHA-256) to the same
// server asks how much the server holds (QueryUpload) and writes on from there; an
// unknown or expired upload (NOT_FOUND) starts over.

package courier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/courier-rtm/courier/client/go/internal/pb"
)

// UploadStateSuffix follows a file's path in the name of its upload state file.
const UploadStateSuffix = ".courier-upload"

const (
	// checksumRetries is how many times a part refused for its CRC32C is sent again.
	checksumRetries = 3
	// uploadRestarts is how many times an upload that expired under us starts over.
	uploadRestarts = 2
)

// castagnoli is the CRC32C table (RFC 3720, as GCS uses).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ResumableOptions describe a resumable upload.
type ResumableOptions struct {
	// UploadOptions are those of an upload: Kind, FileName, ContentType and
	// OnProgress (Done counts the bytes the server holds).
	UploadOptions
	// StopAfterParts, when above 0, stops after writing that many parts in this call,
	// without committing: the result has no Media, and the state file stays.
	StopAfterParts int
}

// ResumedUpload is what a resumable upload did.
type ResumedUpload struct {
	// Media is the stored record, or nil when the upload stopped after
	// StopAfterParts parts.
	Media *Media
	// UploadID is the ID of the resumable upload on the server.
	UploadID string
	// ResumedFrom is how many bytes the server held when this call started (0 for a
	// new upload).
	ResumedFrom int64
	// CommittedSize is how many bytes the server holds now.
	CommittedSize int64
}

// uploadState is the JSON file kept beside the file.
type uploadState struct {
	UploadID string `json:"upload_id"`
	Server   string `json:"server"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	PartSize uint64 `json:"part_size"`
	FileName string `json:"file_name"`
	Kind     string `json:"kind"`
}

// UploadResumable uploads the file at path resumably and returns what it did:
// StartUploadResumable, then Wait.
func (c *Client) UploadResumable(ctx context.Context, path string, opts ResumableOptions) (ResumedUpload, error) {
	t, err := c.StartUploadResumable(ctx, path, opts)
	if err != nil {
		return ResumedUpload{}, err
	}
	return t.Wait()
}

// StartUploadResumable starts a resumable upload of the file at path and returns at
// once with the running *Transfer. While the server is unavailable a part is retried
// with backoff; when the retries run out (or the process stops) the state file
// path+UploadStateSuffix stays, and the next upload of the same file to the same
// server goes on from what the server holds. A part refused for its CRC32C is sent
// again (3 times at most); one refused as out of place (ErrUploadOffsetMismatch)
// continues from the server's committed size. Cancelling (ctx, Transfer.Cancel or
// Client.Cancel) abandons the upload on the server and removes the state file.
func (c *Client) StartUploadResumable(ctx context.Context, path string, opts ResumableOptions) (*Transfer[ResumedUpload], error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, localIO(err, "cannot read the upload")
	}
	if !info.Mode().IsRegular() {
		return nil, invalidArgument(nil, "%s is not a regular file", path)
	}
	if info.Size() == 0 {
		return nil, invalidArgument(nil, "%s is empty: an upload needs 1 byte or more", path)
	}
	if opts.StopAfterParts < 0 {
		return nil, invalidArgument(nil, "StopAfterParts must be 0 or more, not %d", opts.StopAfterParts)
	}
	if opts.FileName == "" {
		opts.FileName = filepath.Base(path)
	}
	r := &resumable{c: c, path: path, statePath: path + UploadStateSuffix, size: info.Size(), opts: opts}
	return startTransfer(c, ctx, info.Size(), opts.OnProgress, r.run)
}

// resumable is one resumable upload in progress.
type resumable struct {
	c         *Client
	path      string
	statePath string
	size      int64
	opts      ResumableOptions
	digest    [32]byte
	file      *os.File
}

func (r *resumable) run(ctx context.Context, report func(Progress)) (ResumedUpload, error) {
	file, err := os.Open(r.path)
	if err != nil {
		return ResumedUpload{}, localIO(err, "cannot read the upload")
	}
	defer file.Close()
	r.file = file
	hasher := sha256.New()
	if n, err := io.Copy(hasher, io.NewSectionReader(&contextReaderAt{ctx: ctx, at: file}, 0, r.size)); err != nil || n != r.size {
		if ctxErr := contextError(ctx); ctxErr != nil {
			return ResumedUpload{}, ctxErr
		}
		return ResumedUpload{}, localIO(fmt.Errorf("read %d of %d bytes: %w", n, r.size, err), "cannot read the upload")
	}
	copy(r.digest[:], hasher.Sum(nil))

	uploadID, partSize, committed := "", uint64(0), int64(0)
	if saved := r.saved(); saved != "" {
		answer, err := retrying(r.c, ctx, func(ctx context.Context) (*pb.QueryUploadResponse, error) {
			return r.c.media.QueryUpload(ctx, &pb.QueryUploadRequest{UploadId: saved})
		})
		switch {
		case err == nil:
			uploadID, partSize, committed = saved, answer.GetPartSize(), int64(answer.GetCommittedSize())
		case !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrInvalidArgument):
			return ResumedUpload{}, err // NOT_FOUND, or not an upload ID: start over
		}
	}
	for restarts := 0; ; restarts++ {
		if uploadID == "" {
			created, err := unary(r.c, ctx, func(ctx context.Context) (*pb.CreateUploadResponse, error) {
				return r.c.media.CreateUpload(ctx, &pb.CreateUploadRequest{Header: &pb.UploadHeader{
					Kind: r.opts.Kind.toProto(), FileName: r.opts.FileName, Size: uint64(r.size),
					ContentType: r.opts.ContentType, Sha256: r.digest[:],
				}})
			})
			if err != nil {
				return ResumedUpload{}, err
			}
			uploadID, partSize, committed = created.GetUploadId(), created.GetPartSize(), 0
			if err := r.save(uploadID, partSize); err != nil {
				return ResumedUpload{}, err
			}
		}
		done, err := r.write(ctx, report, uploadID, partSize, committed)
		if err == nil {
			return done, nil
		}
		if ctx.Err() != nil {
			r.abandon(ctx, uploadID)
			return ResumedUpload{}, contextError(ctx)
		}
		if !errors.Is(err, ErrNotFound) || restarts >= uploadRestarts {
			return ResumedUpload{}, err
		}
		uploadID = "" // expired under us: start over
	}
}

// write sends the parts from committed on, then commits.
func (r *resumable) write(ctx context.Context, report func(Progress), uploadID string, partSize uint64, committed int64) (ResumedUpload, error) {
	if partSize == 0 {
		return ResumedUpload{}, &Error{Code: codes.Internal, Message: fmt.Sprintf("the server gave upload %s a part size of 0", uploadID)}
	}
	resumedFrom := committed
	report(Progress{Done: committed, Total: r.size})
	buffer := make([]byte, min(int64(partSize), r.size))
	written, checksumFailures := 0, 0
	for committed < r.size {
		if r.opts.StopAfterParts > 0 && written >= r.opts.StopAfterParts {
			return ResumedUpload{UploadID: uploadID, ResumedFrom: resumedFrom, CommittedSize: committed}, nil
		}
		part := buffer[:min(int64(partSize), r.size-committed)]
		if _, err := r.file.ReadAt(part, committed); err != nil {
			return ResumedUpload{}, localIO(err, "cannot read the upload")
		}
		sum := crc32.Checksum(part, castagnoli)
		answer, err := retrying(r.c, ctx, func(ctx context.Context) (*pb.WriteUploadResponse, error) {
			return r.c.media.WriteUpload(ctx, &pb.WriteUploadRequest{
				UploadId: uploadID, Offset: uint64(committed), Data: part, Crc32C: sum,
			})
		})
		switch {
		case errors.Is(err, ErrChecksumMismatch):
			if checksumFailures++; checksumFailures > checksumRetries {
				return ResumedUpload{}, err
			}
			continue
		case errors.Is(err, ErrUploadOffsetMismatch):
			query, err := retrying(r.c, ctx, func(ctx context.Context) (*pb.QueryUploadResponse, error) {
				return r.c.media.QueryUpload(ctx, &pb.QueryUploadRequest{UploadId: uploadID})
			})
			if err != nil {
				return ResumedUpload{}, err
			}
			committed = int64(query.GetCommittedSize())
			continue
		case err != nil:
			return ResumedUpload{}, err
		}
		committed = int64(answer.GetCommittedSize())
		written++
		checksumFailures = 0
		report(Progress{Done: committed, Total: r.size})
	}
	// The server keeps a committed upload's record for a while: a commit whose answer
	// was lost can be sent again and gets the same record.
	response, err := retrying(r.c, ctx, func(ctx context.Context) (*pb.CommitUploadResponse, error) {
		return r.c.media.CommitUpload(ctx, &pb.CommitUploadRequest{UploadId: uploadID, Sha256: r.digest[:]})
	})
	if err != nil {
		return ResumedUpload{}, err
	}
	os.Remove(r.statePath)
	media := mediaFromProto(response.GetMedia())
	report(Progress{Done: r.size, Total: r.size})
	return ResumedUpload{Media: &media, UploadID: uploadID, ResumedFrom: resumedFrom, CommittedSize: r.size}, nil
}

// saved is the upload ID of a state file naming this server and a file of this
// size and SHA-256, or "".
func (r *resumable) saved() string {
	data, err := os.ReadFile(r.statePath)
	if err != nil {
		return ""
	}
	var state uploadState
	if json.Unmarshal(data, &state) != nil {
		return ""
	}
	if state.Server != r.c.serverURL || state.Size != r.size || state.SHA256 != hex.EncodeToString(r.digest[:]) {
		return ""
	}
	return state.UploadID
}

// save writes the state file through a temporary file renamed into place.
func (r *resumable) save(uploadID string, partSize uint64) error {
	kind := "file"
	if r.opts.Kind == Image {
		kind = "image"
	}
	data, err := json.Marshal(uploadState{
		UploadID: uploadID, Server: r.c.serverURL, Size: r.size, SHA256: hex.EncodeToString(r.digest[:]),
		PartSize: partSize, FileName: r.opts.FileName, Kind: kind,
	})
	if err != nil {
		return &Error{Code: codes.Internal, Message: err.Error(), Err: err}
	}
	temporary := r.statePath + ".tmp"
	if err := os.WriteFile(temporary, append(data, '\n'), 0o600); err != nil {
		return localIO(err, "cannot write the upload state")
	}
	if err := os.Rename(temporary, r.statePath); err != nil {
		os.Remove(temporary)
		return localIO(err, "cannot write the upload state")
	}
	return nil
}

// abandon cancels the upload on the server (as far as it can be reached within a
// few seconds) and removes the state file.
func (r *resumable) abandon(ctx context.Context, uploadID string) {
	os.Remove(r.statePath)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = r.c.media.CancelUpload(ctx, &pb.CancelUploadRequest{UploadId: uploadID})
}

// contextReaderAt stops reading once ctx ends, so that hashing a large file can be
// cancelled.
type contextReaderAt struct {
	ctx context.Context
	at  io.ReaderAt
}

func (c *contextReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.at.ReadAt(p, off)
}
