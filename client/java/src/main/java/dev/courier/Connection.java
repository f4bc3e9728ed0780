package dev.courier;

import courier.v1.MediaServiceGrpc;
import courier.v1.MessagingServiceGrpc;
import dev.courier.errors.CancelledException;
import dev.courier.errors.CourierException;
import io.grpc.Channel;
import io.grpc.ChannelCredentials;
import io.grpc.ClientInterceptors;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.TlsChannelCredentials;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import java.net.URI;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;

/**
 * The connection to a courier server as one user: the token on every call, the deadline
 * of unary calls, retries with backoff where a call is safe to repeat, and the threads
 * that transfers and retries run on.
 */
final class Connection {
  /** The longest pause between two retries or reconnections. */
  static final Duration MAX_BACKOFF = Duration.ofSeconds(5);

  /** The largest frame accepted from the server (data frames are at most 1 MiB). */
  private static final int MAX_INBOUND = 8 * 1024 * 1024;

  /** The HTTP/2 connection (one per replica with several); it reconnects by itself. */
  private final ManagedChannel managed;

  /** The connection with {@code authorization: Bearer <token>} on every call. */
  final Channel channel;

  /** Deadlines, retries, limits. */
  final Options options;

  /** The (first) server URL as the client was given it (resumable uploads record it). */
  final String endpoint;

  /** Runs transfers: one thread each while they run; daemon threads. */
  final ExecutorService transfers;

  /** Runs retries and reconnections after their pause. */
  final ScheduledExecutorService scheduler;

  /** The client's options, fixed at build time. */
  record Options(
      Duration deadline,
      int retries,
      Duration backoff,
      int maxTransfers,
      boolean queueTransfers,
      int chunkSize) {}

  /**
   * Connects to {@code endpoints}: one server URL, or several replicas of one deployment
   * (all {@code http://} or all {@code https://}), over which calls are balanced with
   * gRPC's {@code round_robin}: each call goes to the next replica that is connected, so a
   * retried call or a reconnecting subscription moves on from a replica that died.
   */
  Connection(List<String> endpoints, String token, Options options) {
    if (endpoints.isEmpty()) {
      throw new IllegalArgumentException("no server URL given");
    }
    this.options = options;
    this.endpoint = endpoints.get(0);
    List<String> addresses = new ArrayList<>();
    Boolean tls = null;
    for (String url : endpoints) {
      URI uri = parse(url);
      boolean secure = uri.getScheme().equalsIgnoreCase("https");
      if (tls != null && tls != secure) {
        throw new IllegalArgumentException(
            "the server URLs mix http:// and https://: replicas of one deployment share one");
      }
      tls = secure;
      int port = uri.getPort() >= 0 ? uri.getPort() : (secure ? 443 : 80);
      addresses.add(uri.getHost() + ":" + port); // getHost keeps an IPv6 literal's brackets
    }
    String value = "Bearer " + token.trim();
    if (!value.chars().allMatch(c -> c >= 0x20 && c < 0x7f)) {
      throw new IllegalArgumentException("the token holds characters a header cannot carry");
    }
    ChannelCredentials credentials =
        tls ? TlsChannelCredentials.create() : InsecureChannelCredentials.create();
    ManagedChannelBuilder<?> builder;
    if (addresses.size() == 1) {
      // One server: DNS as usual (pick_first over the name's addresses).
      URI only = parse(endpoints.get(0));
      int port = only.getPort() >= 0 ? only.getPort() : (tls ? 443 : 80);
      builder = Grpc.newChannelBuilderForAddress(only.getHost(), port, credentials);
    } else {
      builder =
          Grpc.newChannelBuilder(Replicas.target(addresses), credentials)
              .defaultLoadBalancingPolicy("round_robin");
    }
    this.managed = builder.maxInboundMessageSize(MAX_INBOUND).userAgent("courier-java").build();
    Metadata headers = new Metadata();
    headers.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), value);
    this.channel =
        ClientInterceptors.intercept(managed, MetadataUtils.newAttachHeadersInterceptor(headers));
    this.transfers = Executors.newCachedThreadPool(daemon("courier-transfer"));
    this.scheduler = Executors.newSingleThreadScheduledExecutor(daemon("courier-timer"));
  }

  private static ThreadFactory daemon(String prefix) {
    AtomicInteger count = new AtomicInteger();
    return task -> {
      Thread thread = new Thread(task, prefix + "-" + count.incrementAndGet());
      thread.setDaemon(true);
      return thread;
    };
  }

  /** A MediaService stub with the unary deadline. */
  MediaServiceGrpc.MediaServiceStub mediaUnary() {
    return MediaServiceGrpc.newStub(channel)
        .withDeadlineAfter(options.deadline().toMillis(), TimeUnit.MILLISECONDS);
  }

  /** A MediaService stub without a deadline, for transfers. */
  MediaServiceGrpc.MediaServiceStub media() {
    return MediaServiceGrpc.newStub(channel);
  }

  /** A blocking MediaService stub without a deadline, for downloads. */
  MediaServiceGrpc.MediaServiceBlockingStub mediaBlocking() {
    return MediaServiceGrpc.newBlockingStub(channel);
  }

  /** A MessagingService stub with the unary deadline. */
  MessagingServiceGrpc.MessagingServiceStub messagingUnary() {
    return MessagingServiceGrpc.newStub(channel)
        .withDeadlineAfter(options.deadline().toMillis(), TimeUnit.MILLISECONDS);
  }

  /** A MessagingService stub without a deadline, for subscriptions. */
  MessagingServiceGrpc.MessagingServiceStub messaging() {
    return MessagingServiceGrpc.newStub(channel);
  }

  /**
   * Runs a unary call; when {@code idempotent}, runs it again with backoff while it fails
   * with UNAVAILABLE. {@code call} makes one attempt (with a fresh deadline) and reports
   * to the observer it is given.
   */
  <R> CompletableFuture<R> unary(boolean idempotent, Consumer<StreamObserver<R>> call) {
    CompletableFuture<R> out = new CompletableFuture<>();
    attempt(call, idempotent ? options.retries() : 0, options.backoff(), out);
    return out;
  }

  private <R> void attempt(
      Consumer<StreamObserver<R>> call, int retriesLeft, Duration pause, CompletableFuture<R> out) {
    StreamObserver<R> observer =
        new StreamObserver<>() {
          private R value;

          @Override
          public void onNext(R response) {
            value = response;
          }

          @Override
          public void onError(Throwable error) {
            CourierException failure = Errors.from(error);
            if (failure.isRetryable() && retriesLeft > 0 && !scheduler.isShutdown()) {
              Duration next = pause.multipliedBy(2);
              try {
                scheduler.schedule(
                    () -> attempt(call, retriesLeft - 1, min(next, MAX_BACKOFF), out),
                    pause.toMillis(),
                    TimeUnit.MILLISECONDS);
                return;
              } catch (RuntimeException closed) {
                // The client closed meanwhile: report the failure as it is.
              }
            }
            out.completeExceptionally(failure);
          }

          @Override
          public void onCompleted() {
            out.complete(value);
          }
        };
    try {
      call.accept(observer);
    } catch (RuntimeException e) {
      out.completeExceptionally(Errors.from(e));
    }
  }

  /** A server URL, checked: {@code http://host:port} or {@code https://host:port}. */
  private static URI parse(String endpoint) {
    URI uri;
    try {
      uri = URI.create(endpoint.trim());
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException("bad server URL " + endpoint + ": " + e.getMessage(), e);
    }
    String scheme = uri.getScheme() == null ? "" : uri.getScheme().toLowerCase(Locale.ROOT);
    if (!scheme.equals("http") && !scheme.equals("https") || uri.getHost() == null) {
      throw new IllegalArgumentException(
          "bad server URL " + endpoint + ": expected http://host:port or https://host:port");
    }
    return uri;
  }

  static Duration min(Duration a, Duration b) {
    return a.compareTo(b) <= 0 ? a : b;
  }

  /** Waits for {@code future}; the blocking form of every async call. */
  static <T> T await(CompletableFuture<T> future) throws CourierException {
    try {
      return future.get();
    } catch (ExecutionException e) {
      throw Errors.from(e.getCause());
    } catch (CancellationException e) {
      throw new CancelledException("cancelled");
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      future.cancel(true);
      throw new CancelledException("interrupted while waiting for the server");
    }
  }

  /** Closes the connection and stops the client's threads. */
  void close() {
    scheduler.shutdownNow();
    transfers.shutdownNow();
    managed.shutdownNow();
    try {
      managed.awaitTermination(5, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
