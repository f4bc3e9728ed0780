/**
 * The Java client of courier, a self-hostable messaging service in which users send
 * each other and channels text, raw, image and file messages; images and files are
 * uploaded once, in chunks, and travel in messages as a media ID.
 *
 * <h2>Layout</h2>
 *
 * <ul>
 *   <li>{@link dev.courier.CourierClient}: the connection, made with a builder; every call
 *       blocking or as a {@link java.util.concurrent.CompletableFuture}.
 *   <li>Transfers: {@link dev.courier.CourierClient#upload} and the downloads hand back a
 *       {@link dev.courier.Transfer} with a request ID, progress and cancel.
 *   <li>Messages: {@link dev.courier.Message} ({@link dev.courier.TextMessage},
 *       {@link dev.courier.RawMessage}, {@link dev.courier.ImageMessage},
 *       {@link dev.courier.FileMessage}) to send; {@link dev.courier.ReceivedMessage}s
 *       from {@link dev.courier.CourierClient#subscribe}, which reconnects by itself.
 *   <li>Errors: {@link dev.courier.errors.CourierException} and one subclass per kind.
 *   <li>{@link dev.courier.FileNames}: where to save received files.
 * </ul>
 */
package dev.courier;
