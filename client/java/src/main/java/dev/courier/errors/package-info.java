/**
 * The exceptions of the courier client: one {@link dev.courier.errors.CourierException}
 * subclass per failure a caller may act on, each carrying the gRPC status code and the
 * {@code google.rpc.ErrorInfo} reason.
 */
package dev.courier.errors;
