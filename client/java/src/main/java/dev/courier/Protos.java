package dev.courier;

import com.google.protobuf.ByteString;
import com.google.protobuf.Timestamp;
import courier.v1.MediaServiceOuterClass;
import courier.v1.MessagingServiceOuterClass;
import java.time.Instant;
import java.util.HexFormat;

/** Conversions between the generated protobuf types and the library's own. */
final class Protos {
  private Protos() {}

  static Instant instant(Timestamp t) {
    return Instant.ofEpochSecond(Math.max(t.getSeconds(), 0), Math.max(t.getNanos(), 0));
  }

  static MediaServiceOuterClass.MediaKind kind(MediaKind kind) {
    return kind == MediaKind.IMAGE
        ? MediaServiceOuterClass.MediaKind.MEDIA_KIND_IMAGE
        : MediaServiceOuterClass.MediaKind.MEDIA_KIND_FILE;
  }

  static Media media(MediaServiceOuterClass.Media m) {
    MediaKind kind =
        m.getKind() == MediaServiceOuterClass.MediaKind.MEDIA_KIND_IMAGE
            ? MediaKind.IMAGE
            : MediaKind.FILE;
    return new Media(
        m.getMediaId(),
        kind,
        m.getFileName(),
        m.getSize(),
        HexFormat.of().formatHex(m.getSha256().toByteArray()),
        m.getContentType(),
        m.getWidth(),
        m.getHeight(),
        instant(m.getCreateTime()),
        instant(m.getExpireTime()));
  }

  static MessagingServiceOuterClass.Message message(Message message) {
    var builder = MessagingServiceOuterClass.Message.newBuilder();
    if (message instanceof TextMessage t) {
      builder.setText(MessagingServiceOuterClass.TextMessage.newBuilder().setText(t.text()));
    } else if (message instanceof RawMessage r) {
      builder.setRaw(
          MessagingServiceOuterClass.RawMessage.newBuilder()
              .setPayload(ByteString.copyFrom(r.payload()))
              .setDescription(r.description()));
    } else if (message instanceof ImageMessage i) {
      builder.setImage(
          MessagingServiceOuterClass.ImageMessage.newBuilder()
              .setMediaId(i.mediaId())
              .setFileName(i.fileName())
              .setSize(i.size())
              .setWidth(i.width())
              .setHeight(i.height())
              .setThumbnail(ByteString.copyFrom(i.thumbnail()))
              .setThumbnailWidth(i.thumbnailWidth())
              .setThumbnailHeight(i.thumbnailHeight()));
    } else if (message instanceof FileMessage f) {
      builder.setFile(
          MessagingServiceOuterClass.FileMessage.newBuilder()
              .setMediaId(f.mediaId())
              .setFileName(f.fileName())
              .setSize(f.size())
              .setThumbnail(ByteString.copyFrom(f.thumbnail())));
    }
    return builder.build();
  }

  /** The library's message, or null for a body this client does not know. */
  static Message message(MessagingServiceOuterClass.Message m) {
    return switch (m.getBodyCase()) {
      case TEXT -> new TextMessage(m.getText().getText());
      case RAW ->
          new RawMessage(m.getRaw().getPayload().toByteArray(), m.getRaw().getDescription());
      case IMAGE -> {
        var i = m.getImage();
        yield new ImageMessage(
            i.getMediaId(),
            i.getFileName(),
            i.getSize(),
            i.getWidth(),
            i.getHeight(),
            i.getThumbnail().toByteArray(),
            i.getThumbnailWidth(),
            i.getThumbnailHeight());
      }
      case FILE -> {
        var f = m.getFile();
        yield new FileMessage(
            f.getMediaId(), f.getFileName(), f.getSize(), f.getThumbnail().toByteArray());
      }
      case BODY_NOT_SET -> null;
    };
  }

  static ReceivedMessage received(MessagingServiceOuterClass.PeerMessageReceived m, long cursor) {
    Message message = message(m.getMessage());
    return message == null
        ? null
        : new ReceivedMessage(
            m.getSenderId(),
            null,
            m.getMessageId(),
            instant(m.getServerTime()),
            m.getOffline(),
            message,
            cursor);
  }

  static ReceivedMessage received(
      MessagingServiceOuterClass.ChannelMessageReceived m, long cursor) {
    Message message = message(m.getMessage());
    return message == null
        ? null
        : new ReceivedMessage(
            m.getSenderId(),
            m.getChannelId(),
            m.getMessageId(),
            instant(m.getServerTime()),
            false,
            message,
            cursor);
  }
}
