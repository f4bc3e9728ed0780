// Downloads to an io.Writer or to a file. A file download writes to a hidden partial
// file beside the target, checks size and SHA-256, then renames it into place, so the
// target is never a half file; an interrupted download resumes from the partial file.

package courier

import (
	"context"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/courier-rtm/courier/client/go/internal/pb"
)

// DownloadOptions describe a download.
type DownloadOptions struct {
	// OnProgress, if set, is called from the transfer's goroutine once the size is
	// known and after each chunk, with Done never decreasing (Agora's
	// onMediaDownloadingProgress).
	OnProgress func(Progress)
	// Offset (downloads to an io.Writer only) resumes from this byte: only the bytes
	// from it on are written, and their count (not their SHA-256, which covers the
	// whole object) is checked. File downloads resume by themselves.
	Offset int64
}

// PartialPath is where DownloadFile keeps the unfinished bytes of mediaID for path:
// `.<name>.<media ID>.part` in the same folder, so that the final rename is atomic.
func PartialPath(path, mediaID string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+"."+mediaID+".part")
}

// StartDownload starts downloading mediaID into w and returns at once with the
// running *Transfer (or ErrTooManyTransfers); Wait on it for the Media record. The
// bytes are written as they arrive and checked against the record's size and
// SHA-256 at the end (ErrIntegrity): a caller that needs only checked bytes buffers
// them, or uses StartDownloadFile.
func (c *Client) StartDownload(ctx context.Context, mediaID string, w io.Writer, opts DownloadOptions) (*Transfer[Media], error) {
	if err := checkMediaID(mediaID); err != nil {
		return nil, err
	}
	if opts.Offset < 0 {
		return nil, invalidArgument(nil, "a negative offset: %d", opts.Offset)
	}
	return startTransfer(c, ctx, 0, opts.OnProgress, func(ctx context.Context, report func(Progress)) (Media, error) {
		return c.runDownload(ctx, mediaID, w, opts.Offset, report)
	})
}

// StartDownloadFile starts downloading mediaID to path (Agora's downloadMediaToFile):
// the bytes go to PartialPath(path, mediaID) and are renamed to path, replacing any
// file there, once their size and SHA-256 match the record. A download whose
// connection broke keeps the partial file and the next one resumes from it; a
// cancelled one, or one that failed otherwise (a partial file of wrong bytes fails the
// integrity check), removes it.
func (c *Client) StartDownloadFile(ctx context.Context, mediaID, path string, opts DownloadOptions) (*Transfer[Media], error) {
	if err := checkMediaID(mediaID); err != nil {
		return nil, err
	}
	if path == "" {
		return nil, invalidArgument(nil, "no path to download to")
	}
	return startTransfer(c, ctx, 0, opts.OnProgress, func(ctx context.Context, report func(Progress)) (Media, error) {
		partial := PartialPath(path, mediaID)
		media, err := c.runDownloadFile(ctx, mediaID, path, partial, report)
		// Only a lost or stalled connection leaves bytes worth resuming from.
		resumable := errors.Is(err, ErrUnavailable) || errors.Is(err, ErrDeadlineExceeded)
		if err != nil && !(resumable && ctx.Err() == nil) {
			os.Remove(partial)
		}
		return media, err
	})
}

// Download downloads mediaID into w and returns the Media record: StartDownload,
// then Wait. Give it a *bytes.Buffer to download into memory (Agora's
// downloadMediaToMemory).
func (c *Client) Download(ctx context.Context, mediaID string, w io.Writer, opts DownloadOptions) (Media, error) {
	t, err := c.StartDownload(ctx, mediaID, w, opts)
	if err != nil {
		return Media{}, err
	}
	return t.Wait()
}

// DownloadFile downloads mediaID to path and returns the Media record:
// StartDownloadFile, then Wait.
func (c *Client) DownloadFile(ctx context.Context, mediaID, path string, opts DownloadOptions) (Media, error) {
	t, err := c.StartDownloadFile(ctx, mediaID, path, opts)
	if err != nil {
		return Media{}, err
	}
	return t.Wait()
}

// openDownload starts a download from offset and reads its first frame, the record.
func (c *Client) openDownload(ctx context.Context, mediaID string, offset int64) (Media, grpc.ServerStreamingClient[pb.DownloadMediaResponse], error) {
	stream, err := c.media.DownloadMedia(ctx, &pb.DownloadMediaRequest{MediaId: mediaID, Offset: uint64(offset)})
	if err != nil {
		return Media{}, nil, fromStatus(ctx, err)
	}
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) || (err == nil && first.GetMedia() == nil) {
		return Media{}, nil, newError(ErrIntegrity, codes.DataLoss, "the download did not start with the media record")
	}
	if err != nil {
		return Media{}, nil, fromStatus(ctx, err)
	}
	return mediaFromProto(first.GetMedia()), stream, nil
}

// copyData writes the data frames of stream to w, hashing them, and returns the new
// count of bytes done.
func copyData(ctx context.Context, stream grpc.ServerStreamingClient[pb.DownloadMediaResponse], w io.Writer, hash hash.Hash, done, total int64, report func(Progress)) (int64, error) {
	report(Progress{Done: done, Total: total})
	for {
		frame, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return done, nil
		}
		if err != nil {
			return done, fromStatus(ctx, err)
		}
		data := frame.GetData()
		if _, err := w.Write(data); err != nil {
			return done, localIO(err, "cannot write the download")
		}
		hash.Write(data)
		done += int64(len(data))
		report(Progress{Done: done, Total: total})
	}
}

func (c *Client) runDownload(ctx context.Context, mediaID string, w io.Writer, offset int64, report func(Progress)) (Media, error) {
	media, stream, err := c.openDownload(ctx, mediaID, offset)
	if err != nil {
		return Media{}, err
	}
	hash := sha256.New()
	done, err := copyData(ctx, stream, w, hash, offset, media.Size, report)
	if err != nil {
		return Media{}, err
	}
	if offset > 0 {
		// The digest covers the whole object: only the count can be checked.
		return media, verify(media, done, media.SHA256)
	}
	var digest [32]byte
	hash.Sum(digest[:0])
	return media, verify(media, done, digest)
}

func (c *Client) runDownloadFile(ctx context.Context, mediaID, path, partial string, report func(Progress)) (Media, error) {
	hash, have, err := hashFile(partial)
	if err != nil {
		return Media{}, err
	}
	media, stream, err := c.openDownload(ctx, mediaID, have)
	if errors.Is(err, ErrOutOfRange) {
		// The partial file is longer than the object: it is not a prefix of it.
		if err := os.Remove(partial); err != nil {
			return Media{}, localIO(err, "cannot remove the partial file")
		}
		hash, have = sha256.New(), 0
		media, stream, err = c.openDownload(ctx, mediaID, 0)
	}
	if err != nil {
		return Media{}, err
	}
	file, err := os.OpenFile(partial, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o666)
	if err != nil {
		return Media{}, localIO(err, "cannot write the download")
	}
	done, err := copyData(ctx, stream, file, hash, have, media.Size, report)
	if err == nil {
		err = file.Sync()
	}
	if closeErr := file.Close(); err == nil && closeErr != nil {
		err = closeErr
	}
	if err != nil {
		var mine *Error
		if !errors.As(err, &mine) {
			err = localIO(err, "cannot write the download")
		}
		return Media{}, err
	}
	var digest [32]byte
	hash.Sum(digest[:0])
	if err := verify(media, done, digest); err != nil {
		return Media{}, err
	}
	if err := os.Rename(partial, path); err != nil {
		return Media{}, localIO(err, "cannot move the download into place")
	}
	return media, nil
}

// hashFile hashes what a partial file already holds; no file is an empty start.
func hashFile(path string) (hash.Hash, int64, error) {
	hash := sha256.New()
	file, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return hash, 0, nil
	}
	if err != nil {
		return nil, 0, localIO(err, "cannot read the partial file")
	}
	defer file.Close()
	n, err := io.Copy(hash, file)
	if err != nil {
		return nil, 0, localIO(err, "cannot read the partial file")
	}
	return hash, n, nil
}

// verify checks a download's byte count and digest against its record.
func verify(media Media, size int64, digest [32]byte) error {
	if size != media.Size {
		return newError(ErrIntegrity, codes.DataLoss, "received %d bytes of %d", size, media.Size)
	}
	if digest != media.SHA256 {
		return newError(ErrIntegrity, codes.DataLoss, "the bytes hash to %x but the record says %s",
			digest, media.SHA256Hex())
	}
	return nil
}
