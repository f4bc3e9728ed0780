package dev.courier;

import com.google.protobuf.ByteString;
import courier.v1.MediaServiceOuterClass.UploadHeader;
import courier.v1.MediaServiceOuterClass.UploadMediaRequest;
import courier.v1.MediaServiceOuterClass.UploadMediaResponse;
import dev.courier.errors.CancelledException;
import dev.courier.errors.CourierException;
import dev.courier.errors.IntegrityException;
import dev.courier.errors.InvalidArgumentException;
import dev.courier.errors.LocalIoException;
import io.grpc.Context;
import io.grpc.Status;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.grpc.stub.StreamObserver;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;

/**
 * Uploads: the header frame, then the source in chunks as fast as the connection takes
 * them (gRPC flow control), hashed while read; the server's SHA-256 is checked against
 * the one computed here.
 *
 * <p>A file or in-memory upload is hashed first and offered to the server by header alone
 * (SHA-256 and size, no data): when this user stored the same content before, the server
 * completes it at once without the bytes. Otherwise the server answers INVALID_ARGUMENT
 * (the same as for content it does not hold, or that another user stored), and the bytes
 * are sent as usual, in the same transfer. A stream can be read only once: it is
 * uploaded at once.
 */
final class Uploads {
  private Uploads() {}

  /** Checks the arguments and starts the upload as a transfer of {@code table}. */
  static Transfer<Media> start(Connection connection, TransferTable table, UploadArgs args)
      throws CourierException {
    long size;
    String fileName = args.fileName();
    if (args.path() != null) {
      Path path = args.path();
      if (!Files.isRegularFile(path)) {
        throw new InvalidArgumentException(path + " is not a file that can be read");
      }
      try {
        size = Files.size(path);
      } catch (IOException e) {
        throw new LocalIoException("cannot read " + path + ": " + e.getMessage(), e);
      }
      if (fileName == null) {
        Path name = path.getFileName();
        if (name == null) {
          throw new InvalidArgumentException(path + " has no file name");
        }
        fileName = name.toString();
      }
    } else {
      size = args.size();
    }
    if (size <= 0) {
      throw new InvalidArgumentException(
          (args.path() != null ? args.path() + " is empty" : "the upload size must be positive")
              + ": there is nothing to upload");
    }
    UploadHeader header =
        UploadHeader.newBuilder()
            .setKind(Protos.kind(args.kind()))
            .setFileName(fileName)
            .setSize(size)
            .setContentType(args.contentType())
            .build();
    long total = size;
    return table.start(
        size, args.listener(), true, transfer -> run(connection, transfer, args, header, total));
  }

  /**
   * The transfer's work: for a file or bytes in memory, the header-only offer first; then,
   * unless it was taken, one UploadMedia call fed from the source on this thread.
   */
  private static void run(
      Connection connection,
      Transfer<Media> transfer,
      UploadArgs args,
      UploadHeader header,
      long size) {
    if (args.path() == null && args.bytes() == null) {
      send(connection, transfer, args, header, size);
      return;
    }
    byte[] known = digestOf(args, transfer);
    if (known == null) {
      // The transfer ended while hashing (a read error, or a cancel).
      return;
    }
    UploadHeader withDigest = header.toBuilder().setSha256(ByteString.copyFrom(known)).build();
    Media reused = tryReuse(connection, transfer, withDigest, known);
    if (transfer.isDone()) {
      return;
    }
    if (reused != null) {
      transfer.report(size, size);
      transfer.succeed(reused);
      return;
    }
    send(connection, transfer, args, withDigest, size);
  }

  /**
   * The SHA-256 of a file (read in chunks) or of bytes in memory; null once the transfer
   * has ended, failed here on a read error or cancelled while reading.
   */
  private static byte[] digestOf(UploadArgs args, Transfer<Media> transfer) {
    MessageDigest sha = sha256();
    if (args.bytes() != null) {
      return sha.digest(args.bytes());
    }
    try (InputStream in = Files.newInputStream(args.path())) {
      byte[] buffer = new byte[64 * 1024];
      for (int n = in.read(buffer); n >= 0; n = in.read(buffer)) {
        if (transfer.cancelRequested() || transfer.isDone()) {
          transfer.fail(new CancelledException("cancelled"));
          return null;
        }
        sha.update(buffer, 0, n);
      }
    } catch (IOException | RuntimeException e) {
      // After a cancel (which interrupts, and so closes the file) this reads as cancelled.
      transfer.fail(
          e instanceof IOException
              ? new LocalIoException("reading the upload failed: " + e.getMessage(), e)
              : e);
      return null;
    }
    return sha.digest();
  }

  /**
   * Offers the content by header alone. Returns the new record when the server took it;
   * null when it wants the bytes (INVALID_ARGUMENT), or when the transfer ended here (a
   * cancel, another error): the caller tells these apart by {@link Transfer#isDone()}.
   */
  private static Media tryReuse(
      Connection connection, Transfer<Media> transfer, UploadHeader header, byte[] digest) {
    CompletableFuture<UploadMediaResponse> answer = new CompletableFuture<>();
    StreamObserver<UploadMediaResponse> responses =
        new StreamObserver<>() {
          private UploadMediaResponse response;

          @Override
          public void onNext(UploadMediaResponse value) {
            response = value;
          }

          @Override
          public void onError(Throwable error) {
            answer.completeExceptionally(error);
          }

          @Override
          public void onCompleted() {
            answer.complete(response);
          }
        };
    Context previous = transfer.context.attach();
    try {
      StreamObserver<UploadMediaRequest> requests = connection.media().uploadMedia(responses);
      requests.onNext(UploadMediaRequest.newBuilder().setHeader(header).build());
      requests.onCompleted();
    } catch (RuntimeException e) {
      transfer.fail(e);
      return null;
    } finally {
      transfer.context.detach(previous);
    }
    UploadMediaResponse response;
    try {
      response = answer.get();
    } catch (InterruptedException e) {
      // A cancel interrupts the worker (and cancels the call).
      transfer.fail(new CancelledException("cancelled"));
      return null;
    } catch (ExecutionException e) {
      Throwable error = e.getCause();
      if (!transfer.cancelRequested()
          && Status.fromThrowable(error).getCode() == Status.Code.INVALID_ARGUMENT) {
        // Not content this user stored (or not stored at all): send the bytes.
        return null;
      }
      transfer.fail(error);
      return null;
    }
    if (response == null || !response.hasMedia()) {
      transfer.fail(new IntegrityException("the server's answer holds no media record"));
      return null;
    }
    Media media = Protos.media(response.getMedia());
    if (!HexFormat.of().formatHex(digest).equals(media.sha256())) {
      transfer.fail(
          new IntegrityException(
              "the server reused SHA-256 "
                  + media.sha256()
                  + " for content that hashes differently here"));
      return null;
    }
    return media;
  }

  /** One UploadMedia call with the data frames, fed from the source on this thread. */
  private static void send(
      Connection connection,
      Transfer<Media> transfer,
      UploadArgs args,
      UploadHeader header,
      long size) {
    Object ready = new Object();
    // Set before the half-close, so read by onCompleted.
    byte[][] digest = new byte[1][];
    // A local failure, which is the cause of whatever the server says after it.
    CourierException[] readError = new CourierException[1];
    ClientResponseObserver<UploadMediaRequest, UploadMediaResponse> responses =
        new ClientResponseObserver<>() {
          private UploadMediaResponse response;

          @Override
          public void beforeStart(ClientCallStreamObserver<UploadMediaRequest> requests) {
            requests.setOnReadyHandler(() -> wake(ready));
          }

          @Override
          public void onNext(UploadMediaResponse value) {
            response = value;
          }

          @Override
          public void onError(Throwable error) {
            CourierException local;
            synchronized (readError) {
              local = readError[0];
            }
            transfer.fail(local != null ? local : error);
            wake(ready);
          }

          @Override
          public void onCompleted() {
            if (response == null || !response.hasMedia()) {
              transfer.fail(new IntegrityException("the server's answer holds no media record"));
              return;
            }
            Media media = Protos.media(response.getMedia());
            byte[] sent;
            synchronized (digest) {
              sent = digest[0];
            }
            if (sent != null && !HexFormat.of().formatHex(sent).equals(media.sha256())) {
              transfer.fail(
                  new IntegrityException(
                      "the server stored SHA-256 "
                          + media.sha256()
                          + " but the bytes read here hash differently"));
              return;
            }
            transfer.report(size, size);
            transfer.succeed(media);
          }
        };
    ClientCallStreamObserver<UploadMediaRequest> requests;
    Context previous = transfer.context.attach();
    try {
      requests =
          (ClientCallStreamObserver<UploadMediaRequest>) connection.media().uploadMedia(responses);
    } finally {
      transfer.context.detach(previous);
    }
    try (InputStream in = args.path() != null ? Files.newInputStream(args.path()) : null) {
      InputStream source =
          in != null
              ? in
              : args.bytes() != null ? new ByteArrayInputStream(args.bytes()) : args.stream();
      requests.onNext(UploadMediaRequest.newBuilder().setHeader(header).build());
      MessageDigest sha = sha256();
      byte[] buffer = new byte[connection.options.chunkSize()];
      long done = 0;
      // A file is read to its end (the server checks the size); a stream up to its size.
      boolean bounded = args.path() == null;
      while (!transfer.isDone()) {
        int want = bounded ? (int) Math.min(buffer.length, size - done) : buffer.length;
        if (want == 0) {
          break;
        }
        int n = source.readNBytes(buffer, 0, want);
        if (n == 0) {
          break;
        }
        sha.update(buffer, 0, n);
        if (!awaitReady(requests, transfer, ready)) {
          return;
        }
        requests.onNext(
            UploadMediaRequest.newBuilder().setData(ByteString.copyFrom(buffer, 0, n)).build());
        done += n;
        transfer.report(Math.min(done, size), size);
      }
      if (transfer.isDone()) {
        return;
      }
      synchronized (digest) {
        digest[0] = sha.digest();
      }
      requests.onCompleted();
    } catch (IOException | RuntimeException e) {
      if (transfer.isDone()) {
        return;
      }
      CourierException failure =
          e instanceof IOException
              ? new LocalIoException("reading the upload failed: " + e.getMessage(), e)
              : Errors.from(e);
      synchronized (readError) {
        readError[0] = failure;
      }
      requests.cancel("reading the upload failed", e);
      transfer.fail(failure);
    }
  }

  /** Waits until the call takes another frame; false once the transfer has ended. */
  private static boolean awaitReady(
      ClientCallStreamObserver<UploadMediaRequest> requests, Transfer<?> transfer, Object ready) {
    synchronized (ready) {
      while (!requests.isReady()) {
        if (transfer.isDone()) {
          return false;
        }
        try {
          // The ready handler wakes this; the timeout only guards against a lost wake-up.
          ready.wait(50);
        } catch (InterruptedException e) {
          // A cancel interrupts the worker; the loop sees the transfer end.
          Thread.currentThread().interrupt();
          return false;
        }
      }
    }
    return !transfer.isDone();
  }

  private static void wake(Object ready) {
    synchronized (ready) {
      ready.notifyAll();
    }
  }

  static MessageDigest sha256() {
    try {
      return MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("every Java runtime has SHA-256", e);
    }
  }
}
