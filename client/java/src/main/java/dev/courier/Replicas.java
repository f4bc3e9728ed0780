package dev.courier;

import io.grpc.EquivalentAddressGroup;
import io.grpc.NameResolver;
import io.grpc.NameResolverProvider;
import io.grpc.NameResolverRegistry;
import io.grpc.Status;
import io.grpc.StatusOr;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.URI;
import java.net.UnknownHostException;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.concurrent.Executor;

/**
 * Several replicas of one courier deployment as one gRPC target: a static name resolver
 * over the given {@code host:port} addresses (scheme {@value #SCHEME}, target {@code
 * courier-replicas:///host1:port1,host2:port2}), for a channel that balances calls over
 * them with gRPC's {@code round_robin} policy. Each address is one server; a host name
 * is resolved when the channel starts and again when gRPC asks (after a connection
 * failed), so a replica whose address changed is found again.
 */
final class Replicas {
  /** The target scheme this resolver answers. */
  static final String SCHEME = "courier-replicas";

  /** Registered once per process: the registry is global, the addresses are per target. */
  private static final Provider PROVIDER = register();

  private Replicas() {}

  private static Provider register() {
    Provider provider = new Provider();
    NameResolverRegistry.getDefaultRegistry().register(provider);
    return provider;
  }

  /**
   * The gRPC target naming every address ({@code host:port}, IPv6 hosts in brackets).
   *
   * @param addresses the replicas' addresses, at least one
   * @return the target, for {@code Grpc.newChannelBuilder}
   */
  static String target(List<String> addresses) {
    if (PROVIDER == null) {
      throw new IllegalStateException("the resolver is registered in the static initializer");
    }
    return SCHEME + ":///" + String.join(",", addresses);
  }

  /** Makes a resolver for each channel of this scheme. */
  private static final class Provider extends NameResolverProvider {
    @Override
    protected boolean isAvailable() {
      return true;
    }

    @Override
    protected int priority() {
      // The lowest: the registry's default scheme (for targets without one) stays DNS's.
      return 0;
    }

    @Override
    public String getDefaultScheme() {
      return SCHEME;
    }

    @Override
    public Collection<Class<? extends SocketAddress>> getProducedSocketAddressTypes() {
      return List.of(InetSocketAddress.class);
    }

    @Override
    public NameResolver newNameResolver(URI target, NameResolver.Args args) {
      if (!SCHEME.equals(target.getScheme())) {
        return null;
      }
      String path = target.getPath() == null ? "" : target.getPath();
      List<String> addresses = new ArrayList<>();
      for (String part : path.replaceFirst("^/", "").split(",")) {
        if (!part.isBlank()) {
          addresses.add(part.trim());
        }
      }
      if (addresses.isEmpty()) {
        throw new IllegalArgumentException("no address in " + target);
      }
      Executor offload = args.getOffloadExecutor();
      return new Resolver(addresses, offload != null ? offload : Runnable::run);
    }
  }

  /** Resolves a fixed list of host:port addresses, one address group per replica. */
  private static final class Resolver extends NameResolver {
    /** The replicas' {@code host:port}, as given. */
    private final List<String> addresses;

    /** Where name lookups run (never on gRPC's synchronization context). */
    private final Executor executor;

    /** Who hears each result; set by start (guarded by this). */
    private Listener2 listener;

    /** Set by shutdown: no more results (guarded by this). */
    private boolean shutdown;

    Resolver(List<String> addresses, Executor executor) {
      this.addresses = addresses;
      this.executor = executor;
    }

    @Override
    public String getServiceAuthority() {
      // One authority for every replica: the first address's (TLS checks this name).
      return addresses.get(0);
    }

    @Override
    public synchronized void start(Listener2 listener) {
      this.listener = listener;
      resolve();
    }

    @Override
    public void refresh() {
      resolve();
    }

    private void resolve() {
      executor.execute(
          () -> {
            List<EquivalentAddressGroup> groups = new ArrayList<>();
            List<String> failed = new ArrayList<>();
            for (String address : addresses) {
              try {
                groups.add(group(address));
              } catch (UnknownHostException | IllegalArgumentException e) {
                failed.add(address + " (" + e.getMessage() + ")");
              }
            }
            Listener2 to;
            synchronized (this) {
              if (shutdown || listener == null) {
                return;
              }
              to = listener;
            }
            StatusOr<List<EquivalentAddressGroup>> result =
                groups.isEmpty()
                    ? StatusOr.fromStatus(
                        Status.UNAVAILABLE.withDescription("cannot resolve " + failed))
                    : StatusOr.fromValue(groups);
            to.onResult(ResolutionResult.newBuilder().setAddressesOrError(result).build());
          });
    }

    @Override
    public synchronized void shutdown() {
      shutdown = true;
    }
  }

  /** Every IP address of one replica's {@code host:port}, as one group (one server). */
  static EquivalentAddressGroup group(String address) throws UnknownHostException {
    URI uri = URI.create("//" + address);
    if (uri.getHost() == null || uri.getPort() < 0) {
      throw new IllegalArgumentException("expected host:port, got " + address);
    }
    String host = uri.getHost().replaceAll("^\\[|\\]$", "");
    List<SocketAddress> sockets = new ArrayList<>();
    for (InetAddress ip : InetAddress.getAllByName(host)) {
      sockets.add(new InetSocketAddress(ip, uri.getPort()));
    }
    return new EquivalentAddressGroup(sockets);
  }
}
