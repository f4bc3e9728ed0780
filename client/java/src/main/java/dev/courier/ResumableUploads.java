package dev.courier;

import com.google.protobuf.ByteString;
import courier.v1.MediaServiceOuterClass.CancelUploadRequest;
import courier.v1.MediaServiceOuterClass.CancelUploadResponse;
import courier.v1.MediaServiceOuterClass.CommitUploadRequest;
import courier.v1.MediaServiceOuterClass.CommitUploadResponse;
import courier.v1.MediaServiceOuterClass.CreateUploadRequest;
import courier.v1.MediaServiceOuterClass.CreateUploadResponse;
import courier.v1.MediaServiceOuterClass.QueryUploadRequest;
import courier.v1.MediaServiceOuterClass.QueryUploadResponse;
import courier.v1.MediaServiceOuterClass.UploadHeader;
import courier.v1.MediaServiceOuterClass.WriteUploadRequest;
import courier.v1.MediaServiceOuterClass.WriteUploadResponse;
import dev.courier.errors.CancelledException;
import dev.courier.errors.ChecksumMismatchException;
import dev.courier.errors.CourierException;
import dev.courier.errors.InvalidArgumentException;
import dev.courier.errors.LocalIoException;
import dev.courier.errors.NotFoundException;
import dev.courier.errors.UploadOffsetMismatchException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.CRC32C;

/**
 * Resumable uploads (MediaService.CreateUpload/WriteUpload/QueryUpload/CommitUpload): the
 * file goes in parts of the server's part size, each with its CRC32C, so that an upload
 * broken by a lost connection, a restarted server or a restarted process goes on from the
 * bytes the server already holds.
 *
 * <p>What survives a restart is a small JSON file beside the file, {@code
 * <path>.courier-upload} (upload ID, server URL, the file's size and SHA-256, the part
 * size), written after CreateUpload and removed once the upload is committed or cancelled.
 * A later upload of the same file (same size and SHA-256) to the same server asks how much
 * the server holds (QueryUpload) and writes on from there; an unknown or expired upload
 * (NOT_FOUND) starts over.
 */
final class ResumableUploads {
  /** What follows the file's path in the name of its upload state file. */
  static final String STATE_SUFFIX = ".courier-upload";

  /** How many times a part refused for its CRC32C is sent again. */
  private static final int CHECKSUM_RETRIES = 3;

  /** How many times an upload that expired under us starts over. */
  private static final int RESTARTS = 2;

  private ResumableUploads() {}

  /** Checks the arguments and starts the upload as a transfer of {@code table}. */
  static Transfer<ResumedUpload> start(
      Connection connection, TransferTable table, UploadArgs args, int stopAfterParts)
      throws CourierException {
    Path path = args.path();
    if (path == null) {
      throw new InvalidArgumentException("a resumable upload reads a file: UploadArgs.file(path)");
    }
    if (!Files.isRegularFile(path)) {
      throw new InvalidArgumentException(path + " is not a file that can be read");
    }
    if (stopAfterParts < 0) {
      throw new InvalidArgumentException("stopAfterParts must be 0 or more, not " + stopAfterParts);
    }
    long size;
    try {
      size = Files.size(path);
    } catch (IOException e) {
      throw new LocalIoException("cannot read " + path + ": " + e.getMessage(), e);
    }
    if (size <= 0) {
      throw new InvalidArgumentException(path + " is empty: there is nothing to upload");
    }
    String fileName = args.fileName();
    if (fileName == null) {
      Path name = path.getFileName();
      if (name == null) {
        throw new InvalidArgumentException(path + " has no file name");
      }
      fileName = name.toString();
    }
    UploadHeader header =
        UploadHeader.newBuilder()
            .setKind(Protos.kind(args.kind()))
            .setFileName(fileName)
            .setSize(size)
            .setContentType(args.contentType())
            .build();
    Job job = new Job(connection, path, size, header, stopAfterParts);
    return table.start(size, args.listener(), true, job::run);
  }

  /** The CRC32C (Castagnoli, RFC 3720) of {@code data}. */
  static int crc32c(byte[] data, int length) {
    CRC32C crc = new CRC32C();
    crc.update(data, 0, length);
    return (int) crc.getValue();
  }

  /** One resumable upload in progress. */
  static final class Job {
    private final Connection connection;
    private final Path path;
    private final Path statePath;
    private final long size;
    private UploadHeader header;
    private final int stopAfterParts;
    private byte[] digest;

    Job(Connection connection, Path path, long size, UploadHeader header, int stopAfterParts) {
      this.connection = connection;
      this.path = path;
      this.statePath = path.resolveSibling(path.getFileName() + STATE_SUFFIX);
      this.size = size;
      this.header = header;
      this.stopAfterParts = stopAfterParts;
    }

    void run(Transfer<ResumedUpload> transfer) {
      String uploadId = "";
      try {
        digest = sha256(transfer);
        header = header.toBuilder().setSha256(ByteString.copyFrom(digest)).build();
        long partSize = 0;
        long committed = 0;
        String saved = saved();
        if (saved != null) {
          try {
            QueryUploadResponse query = query(saved);
            uploadId = saved;
            partSize = query.getPartSize();
            committed = query.getCommittedSize();
          } catch (NotFoundException | InvalidArgumentException e) {
            // Expired, never was, or not an upload ID: start over.
          }
        }
        for (int restarts = 0; ; restarts++) {
          if (uploadId.isEmpty()) {
            CreateUploadRequest request = CreateUploadRequest.newBuilder().setHeader(header).build();
            CreateUploadResponse created =
                Connection.await(
                    connection.<CreateUploadResponse>unary(
                        false, o -> connection.mediaUnary().createUpload(request, o)));
            uploadId = created.getUploadId();
            partSize = created.getPartSize();
            committed = 0;
            save(uploadId, partSize);
          }
          try {
            transfer.succeed(write(transfer, uploadId, partSize, committed));
            return;
          } catch (NotFoundException e) {
            if (restarts >= RESTARTS || transfer.cancelRequested()) {
              throw e;
            }
            uploadId = ""; // expired under us: start over
          }
        }
      } catch (CourierException | RuntimeException e) {
        if (transfer.cancelRequested() || e instanceof CancelledException) {
          abandon(uploadId);
        }
        transfer.fail(e);
      }
    }

    private ResumedUpload write(
        Transfer<ResumedUpload> transfer, String uploadId, long partSize, long committed)
        throws CourierException {
      if (partSize <= 0) {
        throw new CourierException(
            "the server gave upload " + uploadId + " a part size of " + partSize,
            io.grpc.Status.Code.INTERNAL,
            null,
            null);
      }
      long resumedFrom = committed;
      transfer.report(committed, size);
      byte[] buffer = new byte[(int) Math.min(partSize, size)];
      int written = 0;
      int checksumFailures = 0;
      try (FileChannel file = FileChannel.open(path, StandardOpenOption.READ)) {
        while (committed < size) {
          if (stopAfterParts > 0 && written >= stopAfterParts) {
            return new ResumedUpload(null, uploadId, resumedFrom, committed);
          }
          if (transfer.cancelRequested()) {
            throw new CancelledException("cancelled");
          }
          int length = (int) Math.min(partSize, size - committed);
          ByteBuffer target = ByteBuffer.wrap(buffer, 0, length);
          while (target.hasRemaining()) {
            if (file.read(target, committed + target.position()) < 0) {
              throw new InvalidArgumentException(path + " ended before its " + size + " bytes");
            }
          }
          WriteUploadRequest request =
              WriteUploadRequest.newBuilder()
                  .setUploadId(uploadId)
                  .setOffset(committed)
                  .setData(ByteString.copyFrom(buffer, 0, length))
                  .setCrc32C(crc32c(buffer, length))
                  .build();
          WriteUploadResponse answer;
          try {
            answer =
                Connection.await(
                    connection.<WriteUploadResponse>unary(
                        true, o -> connection.mediaUnary().writeUpload(request, o)));
          } catch (ChecksumMismatchException e) {
            if (++checksumFailures > CHECKSUM_RETRIES) {
              throw e;
            }
            continue;
          } catch (UploadOffsetMismatchException e) {
            committed = query(uploadId).getCommittedSize();
            continue;
          }
          committed = answer.getCommittedSize();
          written++;
          checksumFailures = 0;
          transfer.report(committed, size);
        }
      } catch (IOException e) {
        throw new LocalIoException("reading the upload failed: " + e.getMessage(), e);
      }
      CommitUploadRequest commit =
          CommitUploadRequest.newBuilder()
              .setUploadId(uploadId)
              .setSha256(ByteString.copyFrom(digest))
              .build();
      // The server keeps a committed upload's record for a while: a commit whose answer was
      // lost can be sent again and gets the same record.
      CommitUploadResponse response =
          Connection.await(
              connection.<CommitUploadResponse>unary(
                  true, o -> connection.mediaUnary().commitUpload(commit, o)));
      forget();
      transfer.report(size, size);
      return new ResumedUpload(Protos.media(response.getMedia()), uploadId, resumedFrom, size);
    }

    private QueryUploadResponse query(String uploadId) throws CourierException {
      QueryUploadRequest request = QueryUploadRequest.newBuilder().setUploadId(uploadId).build();
      return Connection.await(
          connection.<QueryUploadResponse>unary(
              true, o -> connection.mediaUnary().queryUpload(request, o)));
    }

    /** Cancels the upload on the server (as far as it answers within seconds). */
    private void abandon(String uploadId) {
      forget();
      if (uploadId.isEmpty()) {
        return;
      }
      CancelUploadRequest request = CancelUploadRequest.newBuilder().setUploadId(uploadId).build();
      try {
        connection
            .<CancelUploadResponse>unary(false, o -> connection.mediaUnary().cancelUpload(request, o))
            .get(5, TimeUnit.SECONDS);
      } catch (Exception e) {
        // It expires by itself.
      }
    }

    private byte[] sha256(Transfer<ResumedUpload> transfer) throws CourierException {
      MessageDigest sha;
      try {
        sha = MessageDigest.getInstance("SHA-256");
      } catch (NoSuchAlgorithmException e) {
        throw new IllegalStateException("every Java has SHA-256", e);
      }
      try (InputStream in = Files.newInputStream(path)) {
        byte[] buffer = new byte[64 * 1024];
        for (int n = in.read(buffer); n >= 0; n = in.read(buffer)) {
          if (transfer.cancelRequested()) {
            throw new CancelledException("cancelled");
          }
          sha.update(buffer, 0, n);
        }
      } catch (IOException e) {
        throw new LocalIoException("reading the upload failed: " + e.getMessage(), e);
      }
      return sha.digest();
    }

    /** The upload ID of a state file naming this server and this file's size and SHA-256. */
    String saved() {
      Map<String, String> state;
      try {
        state = parseFlatJson(Files.readString(statePath, StandardCharsets.UTF_8));
      } catch (IOException | RuntimeException e) {
        return null;
      }
      String uploadId = state.get("upload_id");
      if (uploadId == null
          || uploadId.isEmpty()
          || !connection.endpoint.equals(state.get("server"))
          || !Long.toString(size).equals(state.get("size"))
          || !HexFormat.of().formatHex(digest).equals(state.get("sha256"))) {
        return null;
      }
      return uploadId;
    }

    /** Writes the state file through a temporary file moved into place. */
    void save(String uploadId, long partSize) throws CourierException {
      String json =
          "{\"upload_id\": "
              + quote(uploadId)
              + ", \"server\": "
              + quote(connection.endpoint)
              + ", \"size\": "
              + size
              + ", \"sha256\": "
              + quote(HexFormat.of().formatHex(digest))
              + ", \"part_size\": "
              + partSize
              + ", \"file_name\": "
              + quote(header.getFileName())
              + ", \"kind\": "
              + quote(header.getKind() == courier.v1.MediaServiceOuterClass.MediaKind.MEDIA_KIND_IMAGE
                  ? "image"
                  : "file")
              + "}\n";
      Path temporary = statePath.resolveSibling(statePath.getFileName() + ".tmp");
      try {
        Files.writeString(temporary, json, StandardCharsets.UTF_8);
        Files.move(temporary, statePath, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
      } catch (IOException e) {
        try {
          Files.deleteIfExists(temporary);
        } catch (IOException ignored) {
          // Nothing more to do.
        }
        throw new LocalIoException("cannot write the upload state: " + e.getMessage(), e);
      }
    }

    private void forget() {
      try {
        Files.deleteIfExists(statePath);
      } catch (IOException e) {
        // A stale state file names an upload that expires; the next run checks it.
      }
    }
  }

  /** A JSON string literal. */
  static String quote(String text) {
    StringBuilder out = new StringBuilder("\"");
    for (char c : text.toCharArray()) {
      switch (c) {
        case '"' -> out.append("\\\"");
        case '\\' -> out.append("\\\\");
        default -> {
          if (c < 0x20) {
            out.append(String.format("\\u%04x", (int) c));
          } else {
            out.append(c);
          }
        }
      }
    }
    return out.append('"').toString();
  }

  private static final Pattern MEMBER =
      Pattern.compile("\"((?:[^\"\\\\]|\\\\.)*)\"\\s*:\\s*(\"((?:[^\"\\\\]|\\\\.)*)\"|-?[0-9]+)");

  /**
   * The string and whole-number members of a flat JSON object (the state file holds no
   * other kind), with a string's escapes undone for quotes and backslashes.
   */
  static Map<String, String> parseFlatJson(String json) {
    Map<String, String> members = new HashMap<>();
    Matcher m = MEMBER.matcher(json);
    while (m.find()) {
      String value = m.group(3) != null ? unescape(m.group(3)) : m.group(2);
      members.put(unescape(m.group(1)), value);
    }
    return members;
  }

  private static String unescape(String text) {
    return text.replace("\\\"", "\"").replace("\\\\", "\\");
  }
}
