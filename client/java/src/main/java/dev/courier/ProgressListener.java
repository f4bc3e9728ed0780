package dev.courier;

/**
 * Receives a transfer's progress (Agora's {@code onMediaUploadingProgress} and
 * {@code onMediaDownloadingProgress}). It is called on the transfer's own thread, in
 * order, with {@code done} never decreasing; keep it quick.
 */
@FunctionalInterface
public interface ProgressListener {
  /**
   * The transfer has moved {@code progress.done()} of {@code progress.total()} bytes.
   *
   * @param requestId the transfer's request ID
   * @param progress the progress so far
   */
  void onProgress(long requestId, Progress progress);
}
