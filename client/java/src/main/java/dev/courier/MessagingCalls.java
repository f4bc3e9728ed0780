package dev.courier;

import courier.v1.MessagingServiceOuterClass.GetChannelMembersRequest;
import courier.v1.MessagingServiceOuterClass.GetChannelMembersResponse;
import courier.v1.MessagingServiceOuterClass.JoinChannelRequest;
import courier.v1.MessagingServiceOuterClass.JoinChannelResponse;
import courier.v1.MessagingServiceOuterClass.LeaveChannelRequest;
import courier.v1.MessagingServiceOuterClass.LeaveChannelResponse;
import courier.v1.MessagingServiceOuterClass.PeerOnlineStatus;
import courier.v1.MessagingServiceOuterClass.PeerMessageState;
import courier.v1.MessagingServiceOuterClass.QueryPeersOnlineStatusRequest;
import courier.v1.MessagingServiceOuterClass.QueryPeersOnlineStatusResponse;
import courier.v1.MessagingServiceOuterClass.SendChannelMessageRequest;
import courier.v1.MessagingServiceOuterClass.SendChannelMessageResponse;
import courier.v1.MessagingServiceOuterClass.SendMessageOptions;
import courier.v1.MessagingServiceOuterClass.SendPeerMessageRequest;
import courier.v1.MessagingServiceOuterClass.SendPeerMessageResponse;
import dev.courier.errors.CourierException;
import dev.courier.errors.InvalidArgumentException;
import dev.courier.errors.PeerUnreachableException;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;

/**
 * The messages, channels and presence calls of {@link CourierClient}, which inherits
 * them (see {@link MediaCalls} for why a superclass).
 */
abstract sealed class MessagingCalls extends MediaCalls permits CourierClient {
  MessagingCalls(Connection connection, int maxTransfers, boolean queueTransfers) {
    super(connection, maxTransfers, queueTransfers);
  }

  // ---- Messages -----------------------------------------------------------------------

  /**
   * Sends {@code message} to {@code peer} (Agora's {@code sendMessageToPeer}). The send
   * carries the options' client message ID (or a generated one) and is retried with it
   * while the server is unavailable: the server delivers it once. An empty text or raw
   * payload fails with {@link InvalidArgumentException}, without a call.
   *
   * @param peer the receiver's user ID
   * @param message the message
   * @param options offline messaging on or off
   * @return the future receipt: delivered, or cached for an offline peer; it fails with
   *     {@link PeerUnreachableException} for an offline peer without offline messaging
   */
  public CompletableFuture<SendReceipt> sendPeerMessageAsync(
      String peer, Message message, SendOptions options) {
    try {
      checkNotEmpty(message);
    } catch (InvalidArgumentException e) {
      return CompletableFuture.failedFuture(e);
    }
    SendPeerMessageRequest request =
        SendPeerMessageRequest.newBuilder()
            .setPeerId(peer)
            .setMessage(Protos.message(message))
            .setOptions(
                SendMessageOptions.newBuilder().setEnableOfflineMessaging(options.offline()))
            .setClientMessageId(options.idForSend())
            .build();
    return connection
        .<SendPeerMessageResponse>unary(
            true, o -> connection.messagingUnary().sendPeerMessage(request, o))
        .thenApply(
            response -> {
              Delivery delivery;
              if (response.getState() == PeerMessageState.PEER_MESSAGE_STATE_DELIVERED) {
                delivery = Delivery.DELIVERED;
              } else if (response.getState() == PeerMessageState.PEER_MESSAGE_STATE_CACHED) {
                delivery = Delivery.CACHED;
              } else {
                throw new CompletionException(
                    new PeerUnreachableException(peer, response.getMessageId()));
              }
              return new SendReceipt(
                  response.getMessageId(), Protos.instant(response.getServerTime()), delivery);
            });
  }

  /**
   * Sends {@code message} to {@code peer}; see {@link #sendPeerMessageAsync}.
   *
   * @param peer the receiver's user ID
   * @param message the message
   * @param options offline messaging on or off
   * @return the receipt: delivered, or cached for an offline peer
   * @throws CourierException {@link PeerUnreachableException} for an offline peer without
   *     offline messaging, {@link InvalidArgumentException} for an empty text or raw
   *     payload, {@link dev.courier.errors.MessageTooLargeException},
   *     {@link dev.courier.errors.MediaUnavailableException},
   *     {@link dev.courier.errors.RateLimitedException}, ...
   */
  public SendReceipt sendPeerMessage(String peer, Message message, SendOptions options)
      throws CourierException {
    return Connection.await(sendPeerMessageAsync(peer, message, options));
  }

  /**
   * Sends {@code message} to every other member of {@code channel} (Agora's
   * {@code RtmChannel.sendMessage}); the caller must be a member. Retried with a generated
   * client message ID, as {@link #sendPeerMessageAsync} is. An empty text or raw payload
   * fails with {@link InvalidArgumentException}, without a call.
   *
   * @param channel the channel ID
   * @param message the message
   * @return the future receipt
   */
  public CompletableFuture<SendReceipt> sendChannelMessageAsync(String channel, Message message) {
    return sendChannelMessageAsync(channel, message, SendOptions.defaults());
  }

  /**
   * Sends {@code message} to every other member of {@code channel} with the options'
   * client message ID (their offline flag does not apply to channels). An empty text or
   * raw payload fails with {@link InvalidArgumentException}, without a call.
   *
   * @param channel the channel ID
   * @param message the message
   * @param options the client message ID
   * @return the future receipt
   */
  public CompletableFuture<SendReceipt> sendChannelMessageAsync(
      String channel, Message message, SendOptions options) {
    try {
      checkNotEmpty(message);
    } catch (InvalidArgumentException e) {
      return CompletableFuture.failedFuture(e);
    }
    SendChannelMessageRequest request =
        SendChannelMessageRequest.newBuilder()
            .setChannelId(channel)
            .setMessage(Protos.message(message))
            .setClientMessageId(options.idForSend())
            .build();
    return connection
        .<SendChannelMessageResponse>unary(
            true, o -> connection.messagingUnary().sendChannelMessage(request, o))
        .thenApply(
            response ->
                new SendReceipt(
                    response.getMessageId(),
                    Protos.instant(response.getServerTime()),
                    Delivery.DELIVERED));
  }

  /**
   * Sends {@code message} to a channel; see {@link #sendChannelMessageAsync}.
   *
   * @param channel the channel ID
   * @param message the message
   * @return the receipt
   * @throws CourierException {@link dev.courier.errors.NotAMemberException} when the
   *     caller has not joined, and the errors of {@link #sendPeerMessage}
   */
  public SendReceipt sendChannelMessage(String channel, Message message) throws CourierException {
    return Connection.await(sendChannelMessageAsync(channel, message));
  }

  /**
   * Sends {@code message} to a channel with the options' client message ID; see {@link
   * #sendChannelMessageAsync(String, Message, SendOptions)}.
   *
   * @param channel the channel ID
   * @param message the message
   * @param options the client message ID
   * @return the receipt
   * @throws CourierException as {@link #sendChannelMessage(String, Message)}
   */
  public SendReceipt sendChannelMessage(String channel, Message message, SendOptions options)
      throws CourierException {
    return Connection.await(sendChannelMessageAsync(channel, message, options));
  }

  /**
   * Refuses an empty message before any call, as the server would: a text message with
   * empty text, or a raw message with an empty payload.
   */
  private static void checkNotEmpty(Message message) throws InvalidArgumentException {
    if (message instanceof TextMessage t && t.text().isEmpty()) {
      throw new InvalidArgumentException(
          "a text message needs text: an empty one cannot be sent");
    }
    if (message instanceof RawMessage r && r.payload().length == 0) {
      throw new InvalidArgumentException(
          "a raw message needs a payload: an empty one cannot be sent");
    }
  }

  // ---- Channels and presence ----------------------------------------------------------

  /**
   * Joins {@code channel}, creating it if needed (joining twice is fine).
   *
   * @param channel the channel ID
   * @return a future that completes once joined
   */
  public CompletableFuture<Void> joinChannelAsync(String channel) {
    JoinChannelRequest request = JoinChannelRequest.newBuilder().setChannelId(channel).build();
    return connection
        .<JoinChannelResponse>unary(true, o -> connection.messagingUnary().joinChannel(request, o))
        .thenApply(response -> null);
  }

  /**
   * Joins {@code channel} (Agora's {@code RtmChannel.join}).
   *
   * @param channel the channel ID
   * @throws CourierException {@link dev.courier.errors.TooManyChannelsException} beyond
   *     20 channels
   */
  public void joinChannel(String channel) throws CourierException {
    Connection.await(joinChannelAsync(channel));
  }

  /**
   * Leaves {@code channel}; delivery stops at once (leaving twice is fine).
   *
   * @param channel the channel ID
   * @return a future that completes once left
   */
  public CompletableFuture<Void> leaveChannelAsync(String channel) {
    LeaveChannelRequest request = LeaveChannelRequest.newBuilder().setChannelId(channel).build();
    return connection
        .<LeaveChannelResponse>unary(
            true, o -> connection.messagingUnary().leaveChannel(request, o))
        .thenApply(response -> null);
  }

  /**
   * Leaves {@code channel} (Agora's {@code RtmChannel.leave}).
   *
   * @param channel the channel ID
   * @throws CourierException when the server refuses
   */
  public void leaveChannel(String channel) throws CourierException {
    Connection.await(leaveChannelAsync(channel));
  }

  /**
   * The members of {@code channel}, sorted.
   *
   * @param channel the channel ID
   * @return the future user IDs
   */
  public CompletableFuture<List<String>> channelMembersAsync(String channel) {
    GetChannelMembersRequest request =
        GetChannelMembersRequest.newBuilder().setChannelId(channel).build();
    return connection
        .<GetChannelMembersResponse>unary(
            true, o -> connection.messagingUnary().getChannelMembers(request, o))
        .thenApply(response -> List.copyOf(response.getUserIdsList()));
  }

  /**
   * The members of {@code channel}, sorted (Agora's {@code RtmChannel.getMembers}).
   *
   * @param channel the channel ID
   * @return the user IDs
   * @throws CourierException when the server refuses
   */
  public List<String> channelMembers(String channel) throws CourierException {
    return Connection.await(channelMembersAsync(channel));
  }

  /**
   * Whether each of {@code users} is online (has a subscription open).
   *
   * @param users 1 to 256 user IDs
   * @return the future map from user ID to online, in the order asked
   */
  public CompletableFuture<Map<String, Boolean>> queryPeersOnlineStatusAsync(
      Collection<String> users) {
    QueryPeersOnlineStatusRequest request =
        QueryPeersOnlineStatusRequest.newBuilder().addAllUserIds(users).build();
    return connection
        .<QueryPeersOnlineStatusResponse>unary(
            true, o -> connection.messagingUnary().queryPeersOnlineStatus(request, o))
        .thenApply(
            response -> {
              Map<String, Boolean> online = new LinkedHashMap<>();
              for (PeerOnlineStatus status : response.getStatusesList()) {
                online.put(status.getUserId(), status.getOnline());
              }
              return online;
            });
  }

  /**
   * Whether each of {@code users} is online (Agora's {@code queryPeersOnlineStatus}).
   *
   * @param users 1 to 256 user IDs
   * @return a map from user ID to online, in the order asked
   * @throws CourierException when the server refuses
   */
  public Map<String, Boolean> queryPeersOnlineStatus(Collection<String> users)
      throws CourierException {
    return Connection.await(queryPeersOnlineStatusAsync(users));
  }
}
