package dev.courier;

import java.net.URI;
import java.time.Instant;

/**
 * A signed HTTP link to a stored image or file (or to one of its thumbnails), from {@link
 * CourierClient#mediaUrl}: for loaders that speak HTTP, not gRPC (an {@code <img>} tag, an
 * image loader, a video player that seeks, a CDN). The link is a capability: whoever holds
 * it can GET (or HEAD, with single byte ranges) the bytes without a token until {@code
 * expireTime}; after that the server answers 410. Revoking the user, deleting the media or
 * quarantining it ends the link at once (a CDN's copy outlives that).
 *
 * @param url the absolute link ({@code https://} on a TLS server, {@code http://} otherwise)
 * @param expireTime when the link stops working
 */
public record MediaUrl(URI url, Instant expireTime) {}
