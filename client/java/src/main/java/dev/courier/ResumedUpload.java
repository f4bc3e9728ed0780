package dev.courier;

/**
 * What a resumable upload ({@link CourierClient#uploadResumable}) did.
 *
 * @param media the stored record, or {@code null} when the upload stopped after the parts
 *     it was asked to write (its state file stays, and a later call goes on)
 * @param uploadId the ID of the resumable upload on the server
 * @param resumedFrom the bytes the server already held when this call started (0 for a new
 *     upload)
 * @param committedSize the bytes the server holds now (the file's size once committed)
 */
public record ResumedUpload(Media media, String uploadId, long resumedFrom, long committedSize) {}
