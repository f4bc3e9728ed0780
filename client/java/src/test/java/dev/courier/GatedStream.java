package dev.courier;

import java.io.IOException;
import java.io.InputStream;
import java.io.InterruptedIOException;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * An upload source that yields only the chunks a test feeds it (a slow camera, say); a
 * read blocks until the next chunk comes, is interrupted, or 60 s pass.
 */
final class GatedStream extends InputStream {
  private final BlockingQueue<byte[]> chunks = new LinkedBlockingQueue<>();
  private byte[] current = new byte[0];
  private int position;
  private volatile boolean closed;

  /** Lets {@code chunk} be read. */
  void feed(byte[] chunk) {
    chunks.add(chunk);
  }

  @Override
  public int read() throws IOException {
    byte[] one = new byte[1];
    return read(one, 0, 1) < 0 ? -1 : one[0] & 0xff;
  }

  @Override
  public int read(byte[] buffer, int offset, int length) throws IOException {
    if (length == 0) {
      return 0;
    }
    while (position == current.length) {
      if (closed) {
        return -1;
      }
      try {
        byte[] next = chunks.poll(60, TimeUnit.SECONDS);
        if (next == null) {
          throw new IOException("no chunk fed within 60 s");
        }
        current = next;
        position = 0;
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new InterruptedIOException("interrupted while waiting for data");
      }
    }
    int n = Math.min(length, current.length - position);
    System.arraycopy(current, position, buffer, offset, n);
    position += n;
    return n;
  }

  @Override
  public void close() {
    closed = true;
    chunks.add(new byte[0]);
  }
}
