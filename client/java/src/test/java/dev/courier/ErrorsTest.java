package dev.courier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

import com.google.protobuf.Any;
import com.google.rpc.ErrorInfo;
import courier.v1.ErrorReasonOuterClass.ErrorReason;
import dev.courier.errors.ChecksumMismatchException;
import dev.courier.errors.CourierException;
import dev.courier.errors.InvalidArgumentException;
import dev.courier.errors.LocalIoException;
import dev.courier.errors.MediaDeletedException;
import dev.courier.errors.MediaQuarantinedException;
import dev.courier.errors.MediaRejectedException;
import dev.courier.errors.NotFoundException;
import dev.courier.errors.UploadOffsetMismatchException;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.io.IOException;
import org.junit.jupiter.api.Test;

/** The one place where statuses become exception kinds. */
class ErrorsTest {
  private static StatusRuntimeException refusal(Status.Code code, String domain, String reason) {
    com.google.rpc.Status status =
        com.google.rpc.Status.newBuilder()
            .setCode(code.value())
            .setMessage("refused")
            .addDetails(
                Any.pack(ErrorInfo.newBuilder().setDomain(domain).setReason(reason).build()))
            .build();
    return StatusProto.toStatusRuntimeException(status);
  }

  @Test
  void every_reason_of_the_proto_has_its_own_kind() {
    for (ErrorReason reason : ErrorReason.values()) {
      if (reason == ErrorReason.ERROR_REASON_UNSPECIFIED || reason == ErrorReason.UNRECOGNIZED) {
        continue;
      }
      CourierException e =
          Errors.from(refusal(Status.Code.RESOURCE_EXHAUSTED, Errors.DOMAIN, reason.name()));
      assertEquals(reason, e.reason(), reason.name());
      assertEquals(reason.name(), e.reasonName());
      assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.code(), "the server's code is kept");
      assertNotEquals(CourierException.class, e.getClass(), reason + " has a kind of its own");
      assertEquals("refused", e.getMessage());
    }
  }

  @Test
  void an_offset_mismatch_carries_the_committed_size() {
    com.google.rpc.Status status =
        com.google.rpc.Status.newBuilder()
            .setCode(Status.Code.FAILED_PRECONDITION.value())
            .setMessage("gap")
            .addDetails(
                Any.pack(
                    ErrorInfo.newBuilder()
                        .setDomain(Errors.DOMAIN)
                        .setReason("UPLOAD_OFFSET_MISMATCH")
                        .putMetadata("committed_size", "262144")
                        .build()))
            .build();
    CourierException e = Errors.from(StatusProto.toStatusRuntimeException(status));
    UploadOffsetMismatchException mismatch = assertInstanceOf(UploadOffsetMismatchException.class, e);
    assertEquals(262144, mismatch.committedSize());
    assertInstanceOf(
        ChecksumMismatchException.class,
        Errors.from(refusal(Status.Code.INVALID_ARGUMENT, Errors.DOMAIN, "CHECKSUM_MISMATCH")));
  }

  @Test
  void hook_verdicts_and_deletions_have_their_kinds() {
    CourierException rejected =
        Errors.from(
            refusal(
                Status.Code.FAILED_PRECONDITION, Errors.DOMAIN, ErrorReason.MEDIA_REJECTED.name()));
    assertInstanceOf(MediaRejectedException.class, rejected);
    assertEquals(Status.Code.FAILED_PRECONDITION, rejected.code());
    CourierException quarantined =
        Errors.from(
            refusal(
                Status.Code.FAILED_PRECONDITION,
                Errors.DOMAIN,
                ErrorReason.MEDIA_QUARANTINED.name()));
    assertInstanceOf(MediaQuarantinedException.class, quarantined);
    assertEquals(ErrorReason.MEDIA_QUARANTINED, quarantined.reason());
    CourierException deleted =
        Errors.from(
            refusal(Status.Code.NOT_FOUND, Errors.DOMAIN, ErrorReason.MEDIA_DELETED.name()));
    assertInstanceOf(MediaDeletedException.class, deleted);
    // Code that handles unknown media handles deleted media too.
    assertInstanceOf(NotFoundException.class, deleted);
    assertEquals("MEDIA_DELETED", deleted.reasonName());
    assertEquals(Status.Code.NOT_FOUND, deleted.code());
    assertEquals(Status.Code.NOT_FOUND, new MediaDeletedException("gone").code());
    assertEquals(
        Status.Code.FAILED_PRECONDITION, new MediaQuarantinedException("held").code());
  }

  @Test
  void a_connection_closed_under_a_call_is_unavailable() {
    CourierException lost =
        Errors.from(
            Status.UNKNOWN
                .withDescription("channel closed")
                .withCause(new java.nio.channels.ClosedChannelException())
                .asRuntimeException());
    assertInstanceOf(dev.courier.errors.UnavailableException.class, lost);
    assertEquals(Status.Code.UNAVAILABLE, lost.code());
    assertEquals(true, lost.isRetryable(), "retried, on another replica when there are several");
    CourierException fromServer =
        Errors.from(Status.UNKNOWN.withDescription("a server's own UNKNOWN").asRuntimeException());
    assertEquals(Status.Code.UNKNOWN, fromServer.code());
  }

  @Test
  void unknown_reasons_and_other_domains_fall_back_on_the_code() {
    CourierException unknown =
        Errors.from(refusal(Status.Code.NOT_FOUND, Errors.DOMAIN, "SOMETHING_NEW"));
    assertInstanceOf(NotFoundException.class, unknown);
    assertEquals("", unknown.reasonName());
    CourierException foreign =
        Errors.from(refusal(Status.Code.INVALID_ARGUMENT, "example.com", "MEDIA_TOO_LARGE"));
    assertInstanceOf(InvalidArgumentException.class, foreign);
    assertEquals(ErrorReason.ERROR_REASON_UNSPECIFIED, foreign.reason());
  }

  @Test
  void other_codes_and_local_errors_keep_their_code() {
    CourierException internal = Errors.from(Status.INTERNAL.withDescription("oops").asRuntimeException());
    assertEquals(CourierException.class, internal.getClass());
    assertEquals(Status.Code.INTERNAL, internal.code());
    CourierException io = Errors.from(new IOException("disk full"));
    assertInstanceOf(LocalIoException.class, io);
    assertEquals(Status.Code.INTERNAL, io.code());
  }
}
