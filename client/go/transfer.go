// Transfers: uploads and downloads run in their own goroutine; the caller holds a
// *Transfer with a request ID, the progress so far and a cancel handle, and waits on
// it for the result — the model of Agora's SDK, beside Go's own context cancellation.

package courier

import (
	"context"
	"errors"
	"sync"

	"google.golang.org/grpc/codes"
)

// RequestID identifies a transfer of this client while it runs; once the transfer
// ends, the ID is no longer valid.
type RequestID uint64

// Progress is how far a transfer has come.
type Progress struct {
	// Done is the number of bytes moved so far (for a resumed download, counting the
	// bytes that were already there).
	Done int64
	// Total is the number of bytes in all (0 until a download knows the size).
	Total int64
}

// errCancelledByCaller is the cause of a transfer stopped by Cancel.
var errCancelledByCaller = errors.New("the transfer was cancelled by its request ID or handle")

// Transfer is a running upload or download. Wait for its result; Cancel stops it.
// A Transfer ends by itself when the context it was started with ends.
type Transfer[T any] struct {
	// id is the request ID, valid until the transfer ends.
	id RequestID
	// cancel stops the transfer's context.
	cancel context.CancelCauseFunc
	// done is closed once result and err are set.
	done chan struct{}
	// result and err are the outcome, written once before done is closed.
	result T
	err    error
	// mu guards progress, which the transfer's goroutine writes.
	mu       sync.Mutex
	progress Progress
}

// RequestID returns the transfer's request ID.
func (t *Transfer[T]) RequestID() RequestID { return t.id }

// Progress returns the progress so far.
func (t *Transfer[T]) Progress() Progress {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.progress
}

// Cancel stops the transfer: the call is cancelled, the server removes any partial
// data and frees the slot, and Wait returns an error matching ErrCancelled. Cancelling
// a finished transfer does nothing.
func (t *Transfer[T]) Cancel() { t.cancel(errCancelledByCaller) }

// Done is closed when the transfer has ended and Wait no longer blocks.
func (t *Transfer[T]) Done() <-chan struct{} { return t.done }

// Wait blocks until the transfer ends and returns its result.
func (t *Transfer[T]) Wait() (T, error) {
	<-t.done
	return t.result, t.err
}

// report records progress and passes it to the caller's callback, in the order the
// transfer's goroutine makes it.
func (t *Transfer[T]) report(p Progress, callback func(Progress)) {
	t.mu.Lock()
	t.progress = p
	t.mu.Unlock()
	if callback != nil {
		callback(p)
	}
}

// transferTable holds a client's running transfers and enforces its cap.
type transferTable struct {
	// slots holds one token per running transfer; its capacity is the cap.
	slots chan struct{}
	// queue makes a transfer past the cap wait for a slot instead of failing.
	queue bool
	// mu guards running and nextID; held for one map operation, never across a call.
	mu sync.Mutex
	// running maps the request IDs of running transfers to their cancel functions.
	running map[RequestID]context.CancelCauseFunc
	// nextID is the request ID of the next transfer.
	nextID RequestID
}

func newTransferTable(limit int, queue bool) *transferTable {
	return &transferTable{
		slots:   make(chan struct{}, max(limit, 1)),
		queue:   queue,
		running: make(map[RequestID]context.CancelCauseFunc),
		nextID:  1,
	}
}

// acquire takes a slot: at once, or (with the queue) when one frees up.
func (tt *transferTable) acquire(ctx context.Context) error {
	select {
	case tt.slots <- struct{}{}:
		return nil
	default:
	}
	if !tt.queue {
		return tooManyTransfers(cap(tt.slots))
	}
	select {
	case tt.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return contextError(ctx)
	}
}

// register gives a running transfer its request ID.
func (tt *transferTable) register(cancel context.CancelCauseFunc) RequestID {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	id := tt.nextID
	tt.nextID++
	tt.running[id] = cancel
	return id
}

// finish forgets a transfer and frees its slot.
func (tt *transferTable) finish(id RequestID) {
	tt.mu.Lock()
	delete(tt.running, id)
	tt.mu.Unlock()
	<-tt.slots
}

// Cancel cancels a running upload or download by its request ID; an unknown or
// finished one fails with ErrNoSuchTransfer.
func (c *Client) Cancel(id RequestID) error {
	c.transfers.mu.Lock()
	cancel, ok := c.transfers.running[id]
	c.transfers.mu.Unlock()
	if !ok {
		return newError(ErrNoSuchTransfer, codes.NotFound, "no transfer with request ID %d is running", id)
	}
	cancel(errCancelledByCaller)
	return nil
}

// work is the body of a transfer: it runs under ctx and reports progress.
type work[T any] func(ctx context.Context, report func(Progress)) (T, error)

// startTransfer takes a slot (or fails with ErrTooManyTransfers) and runs do in a
// goroutine under a context derived from ctx. The slot and request ID are given back
// before Wait returns.
func startTransfer[T any](c *Client, ctx context.Context, total int64, onProgress func(Progress), do work[T]) (*Transfer[T], error) {
	if err := ctx.Err(); err != nil {
		return nil, contextError(ctx)
	}
	if err := c.transfers.acquire(ctx); err != nil {
		return nil, err
	}
	tctx, cancel := context.WithCancelCause(ctx)
	t := &Transfer[T]{cancel: cancel, done: make(chan struct{}), progress: Progress{Total: total}}
	t.id = c.transfers.register(cancel)
	go func() {
		defer cancel(nil)
		result, err := do(tctx, func(p Progress) { t.report(p, onProgress) })
		if err != nil && tctx.Err() != nil {
			// However the cancellation surfaced inside, the caller sees why.
			err = contextError(tctx)
		}
		c.transfers.finish(t.id)
		t.result, t.err = result, err
		close(t.done)
	}()
	return t, nil
}
