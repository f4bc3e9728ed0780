// Uploads from an io.Reader of known size or from a file, streamed in chunks with
// progress; the server's SHA-256 is checked against the one computed while reading.
//
// A file, or bytes already in memory (a *bytes.Reader, *strings.Reader or
// *bytes.Buffer), is hashed first and offered to the server by header alone (SHA-256
// and size, no data): when this user stored the same content before, the server
// completes it at once without the bytes. Otherwise the server answers
// INVALID_ARGUMENT (the same as for content it does not hold, or that another user
// stored), and the bytes are sent as usual. Any other reader can be read only once
// and is uploaded directly.

package courier

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/courier-rtm/courier/client/go/internal/pb"
)

// UploadOptions describe an upload.
type UploadOptions struct {
	// Kind is File (the default) or Image.
	Kind MediaKind
	// FileName is the display name: required for a reader, the file's base name by
	// default for a path.
	FileName string
	// ContentType is the MIME type; when empty the server detects image types and
	// otherwise records application/octet-stream.
	ContentType string
	// OnProgress, if set, is called from the transfer's goroutine after each chunk,
	// with Done never decreasing and Total the size (Agora's
	// onMediaUploadingProgress).
	OnProgress func(Progress)
}

// StartUpload starts uploading size bytes read from r and returns at once with the
// running *Transfer (or ErrTooManyTransfers when the client already runs the most it
// may); Wait on it for the Media record. r must yield at least size bytes; only size
// are read. The upload stops when ctx ends. A *bytes.Reader, *strings.Reader or
// *bytes.Buffer is first offered by its SHA-256 alone, as a file is (see the top of
// this file).
func (c *Client) StartUpload(ctx context.Context, r io.Reader, size int64, opts UploadOptions) (*Transfer[Media], error) {
	if opts.FileName == "" {
		return nil, invalidArgument(nil, "an upload needs a file name (UploadOptions.FileName)")
	}
	if size <= 0 {
		return nil, invalidArgument(nil, "%s: an upload needs 1 byte or more, not %d", opts.FileName, size)
	}
	return c.startUpload(ctx, r, nil, inMemory(r, size), size, opts)
}

// StartUploadFile starts uploading the file at path (named after it unless
// opts.FileName is set); see StartUpload.
func (c *Client) StartUploadFile(ctx context.Context, path string, opts UploadOptions) (*Transfer[Media], error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, localIO(err, "cannot read the upload")
	}
	info, err := file.Stat()
	if err == nil && !info.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", path)
	}
	if err != nil {
		file.Close()
		return nil, invalidArgument(err, "cannot read the upload: %v", err)
	}
	if info.Size() == 0 {
		file.Close()
		return nil, invalidArgument(nil, "%s is empty: an upload needs 1 byte or more", path)
	}
	if opts.FileName == "" {
		opts.FileName = filepath.Base(path)
	}
	// The file is hashed through ReadAt, which leaves its offset at the start.
	t, err := c.startUpload(ctx, file, file, &knownContent{at: file}, info.Size(), opts)
	if err != nil {
		file.Close()
	}
	return t, err
}

// Upload uploads size bytes read from r and returns the Media record: StartUpload,
// then Wait.
func (c *Client) Upload(ctx context.Context, r io.Reader, size int64, opts UploadOptions) (Media, error) {
	t, err := c.StartUpload(ctx, r, size, opts)
	if err != nil {
		return Media{}, err
	}
	return t.Wait()
}

// UploadFile uploads the file at path and returns the Media record:
// StartUploadFile, then Wait.
func (c *Client) UploadFile(ctx context.Context, path string, opts UploadOptions) (Media, error) {
	t, err := c.StartUploadFile(ctx, path, opts)
	if err != nil {
		return Media{}, err
	}
	return t.Wait()
}

func (c *Client) startUpload(ctx context.Context, r io.Reader, closer io.Closer, known *knownContent, size int64, opts UploadOptions) (*Transfer[Media], error) {
	header := &pb.UploadHeader{
		Kind:        opts.Kind.toProto(),
		FileName:    opts.FileName,
		Size:        uint64(size),
		ContentType: opts.ContentType,
	}
	return startTransfer(c, ctx, size, opts.OnProgress, func(ctx context.Context, report func(Progress)) (Media, error) {
		if known != nil {
			media, reused, err := c.offerKnown(ctx, known, header)
			if err != nil || reused {
				if closer != nil {
					closer.Close()
				}
				if err == nil {
					report(Progress{Done: size, Total: size})
				}
				return media, err
			}
		}
		return c.runUpload(ctx, r, closer, header, report)
	})
}

// knownContent is an upload's content that can be read before it is sent: a file or
// bytes in memory, hashed to offer the server a re-upload by header alone.
type knownContent struct {
	// at holds the content from offset off on.
	at  io.ReaderAt
	off int64
	// consume, if set, moves the caller's reader past the content once it was
	// re-uploaded without being read, as a normal upload would have.
	consume func(n int64)
}

// inMemory is the content of r when r holds at least size bytes in memory, or nil
// for a reader that can only be read once.
func inMemory(r io.Reader, size int64) *knownContent {
	switch r := r.(type) {
	case *bytes.Reader:
		if int64(r.Len()) >= size {
			return &knownContent{at: r, off: r.Size() - int64(r.Len()),
				consume: func(n int64) { r.Seek(n, io.SeekCurrent) }}
		}
	case *strings.Reader:
		if int64(r.Len()) >= size {
			return &knownContent{at: r, off: r.Size() - int64(r.Len()),
				consume: func(n int64) { r.Seek(n, io.SeekCurrent) }}
		}
	case *bytes.Buffer:
		if int64(r.Len()) >= size {
			return &knownContent{at: bytes.NewReader(r.Bytes()),
				consume: func(n int64) { r.Next(int(n)) }}
		}
	}
	return nil
}

// hashKnown computes the SHA-256 of size bytes of known, in chunks, stopping when ctx
// ends.
func hashKnown(ctx context.Context, known *knownContent, size int64, chunk int) ([32]byte, error) {
	var digest [32]byte
	hash := sha256.New()
	section := io.NewSectionReader(known.at, known.off, size)
	buf := make([]byte, max(chunk, 1))
	for done := int64(0); done < size; {
		if ctx.Err() != nil {
			return digest, contextError(ctx)
		}
		n, err := io.ReadFull(section, buf[:min(int64(len(buf)), size-done)])
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return digest, invalidArgument(err, "the source ended after %d of %d bytes", done+int64(n), size)
			}
			return digest, localIO(err, "cannot read the upload")
		}
		hash.Write(buf[:n])
		done += int64(n)
	}
	hash.Sum(digest[:0])
	return digest, nil
}

// offerKnown hashes known content, puts the digest in header (for the upload of the
// bytes too, should they be needed) and offers the upload by header alone. reused
// says whether the server completed it without the bytes.
func (c *Client) offerKnown(ctx context.Context, known *knownContent, header *pb.UploadHeader) (media Media, reused bool, err error) {
	size := int64(header.GetSize())
	digest, err := hashKnown(ctx, known, size, c.opts.chunkSize)
	if err != nil {
		return Media{}, false, err
	}
	header.Sha256 = digest[:]
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	stream, err := c.media.UploadMedia(ctx)
	if err != nil {
		return Media{}, false, fromStatus(ctx, err)
	}
	err = stream.Send(&pb.UploadMediaRequest{Frame: &pb.UploadMediaRequest_Header{Header: header}})
	var response *pb.UploadMediaResponse
	if err == nil || errors.Is(err, io.EOF) {
		// io.EOF from Send means the server ended the call: its status says why.
		response, err = stream.CloseAndRecv()
	}
	if err != nil {
		if ctx.Err() == nil && status.Code(err) == codes.InvalidArgument {
			refusal := fromStatus(ctx, err)
			if errors.Is(refusal, ErrTooLarge) {
				// Over the server's limit: sending the bytes would not help.
				return Media{}, false, refusal
			}
			// Not content this user stored (or not stored at all): send the bytes.
			return Media{}, false, nil
		}
		return Media{}, false, fromStatus(ctx, err)
	}
	if response.GetMedia() == nil {
		return Media{}, false, newError(ErrIntegrity, codes.DataLoss, "the server's answer holds no media record")
	}
	media = mediaFromProto(response.GetMedia())
	if media.SHA256 != digest {
		return Media{}, false, newError(ErrIntegrity, codes.DataLoss,
			"the server reused SHA-256 %s for content that hashes differently here", media.SHA256Hex())
	}
	if known.consume != nil {
		known.consume(size)
	}
	return media, true, nil
}

// chunks is what the reading goroutine hands the sending one.
type chunks struct {
	// data carries the chunks in order; it is closed after the last one.
	data chan []byte
	// err (a local read error) and digest are set before data is closed.
	err    error
	digest [32]byte
}

// readChunks reads size bytes of r in frames of chunk bytes into out, hashing them,
// until done or ctx ends. It runs in its own goroutine so that a reader that blocks
// cannot keep a cancelled upload from ending.
func readChunks(ctx context.Context, r io.Reader, closer io.Closer, size int64, chunk int, out *chunks) {
	defer close(out.data)
	if closer != nil {
		defer closer.Close()
	}
	hash := sha256.New()
	for done := int64(0); done < size; {
		buf := make([]byte, min(int64(chunk), size-done))
		n, err := io.ReadFull(r, buf)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				out.err = invalidArgument(err, "the source ended after %d of %d bytes", done+int64(n), size)
			} else {
				out.err = localIO(err, "cannot read the upload")
			}
			return
		}
		hash.Write(buf)
		done += int64(n)
		select {
		case out.data <- buf:
		case <-ctx.Done():
			return
		}
	}
	hash.Sum(out.digest[:0])
}

func (c *Client) runUpload(ctx context.Context, r io.Reader, closer io.Closer, header *pb.UploadHeader, report func(Progress)) (Media, error) {
	// Stops the reading goroutine and the call, however this ends.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	size := int64(header.GetSize())
	source := &chunks{data: make(chan []byte, 2)}
	go readChunks(ctx, r, closer, size, c.opts.chunkSize, source)

	stream, err := c.media.UploadMedia(ctx)
	if err != nil {
		return Media{}, fromStatus(ctx, err)
	}
	sendErr := stream.Send(&pb.UploadMediaRequest{Frame: &pb.UploadMediaRequest_Header{Header: header}})
	done := int64(0)
	for sendErr == nil {
		var data []byte
		var more bool
		select {
		case <-ctx.Done():
			return Media{}, contextError(ctx)
		case data, more = <-source.data:
		}
		if !more {
			break
		}
		sendErr = stream.Send(&pb.UploadMediaRequest{Frame: &pb.UploadMediaRequest_Data{Data: data}})
		if sendErr == nil {
			done += int64(len(data))
			report(Progress{Done: done, Total: size})
		}
	}
	// io.EOF from Send means the server ended the call: its status says why.
	if sendErr != nil && !errors.Is(sendErr, io.EOF) {
		return Media{}, fromStatus(ctx, sendErr)
	}
	if sendErr == nil && source.err != nil {
		// A local read error is the root cause of whatever the server would say.
		return Media{}, source.err
	}
	response, err := stream.CloseAndRecv()
	if err != nil {
		return Media{}, fromStatus(ctx, err)
	}
	if response.GetMedia() == nil {
		return Media{}, newError(ErrIntegrity, codes.DataLoss, "the server's answer holds no media record")
	}
	media := mediaFromProto(response.GetMedia())
	if sendErr == nil && media.SHA256 != source.digest {
		return Media{}, newError(ErrIntegrity, codes.DataLoss,
			"the server stored SHA-256 %s but the bytes read here hash differently", media.SHA256Hex())
	}
	report(Progress{Done: size, Total: size})
	return media, nil
}
