// The record of a stored image or file, GetMedia, Thumbnail and DeleteMedia.

package courier

import (
	"context"
	"encoding/hex"
	"math"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/courier-rtm/courier/client/go/internal/pb"
)

// MediaKind says whether an object was uploaded as an image or as a file.
type MediaKind int

const (
	// File is any file (the default kind of an upload).
	File MediaKind = iota
	// Image is an image: the server reads its width and height.
	Image
)

// String returns "file" or "image".
func (k MediaKind) String() string {
	if k == Image {
		return "image"
	}
	return "file"
}

func (k MediaKind) toProto() pb.MediaKind {
	if k == Image {
		return pb.MediaKind_MEDIA_KIND_IMAGE
	}
	return pb.MediaKind_MEDIA_KIND_FILE
}

// Media is the server's record of a stored object.
type Media struct {
	// MediaID is the ID that messages carry and downloads use: 32 lowercase hex
	// characters.
	MediaID string
	// Kind is Image or File.
	Kind MediaKind
	// FileName is the display file name given by the uploader.
	FileName string
	// Size is the size in bytes.
	Size int64
	// SHA256 is the digest of the bytes.
	SHA256 [32]byte
	// ContentType is the MIME type.
	ContentType string
	// Width and Height are in pixels for JPEG, PNG, BMP, GIF and WebP images, else 0.
	Width, Height int
	// Created is when the upload completed.
	Created time.Time
	// Expires is when the object is gone (ErrNotFound from then on).
	Expires time.Time
}

// SHA256Hex returns the digest as lowercase hex.
func (m Media) SHA256Hex() string { return hex.EncodeToString(m.SHA256[:]) }

// ImageMessage is an image message for this object, with its name, size and
// dimensions.
func (m Media) ImageMessage() ImageMessage {
	return ImageMessage{MediaID: m.MediaID, FileName: m.FileName, Size: m.Size, Width: m.Width, Height: m.Height}
}

// FileMessage is a file message for this object, with its name and size.
func (m Media) FileMessage() FileMessage {
	return FileMessage{MediaID: m.MediaID, FileName: m.FileName, Size: m.Size}
}

// Message is an image message for an image and a file message for anything else.
func (m Media) Message() Message {
	if m.Kind == Image {
		return m.ImageMessage()
	}
	return m.FileMessage()
}

func mediaFromProto(m *pb.Media) Media {
	media := Media{
		MediaID:     m.GetMediaId(),
		Kind:        File,
		FileName:    m.GetFileName(),
		Size:        int64(m.GetSize()),
		ContentType: m.GetContentType(),
		Width:       int(m.GetWidth()),
		Height:      int(m.GetHeight()),
		Created:     timeFromProto(m.GetCreateTime()),
		Expires:     timeFromProto(m.GetExpireTime()),
	}
	if m.GetKind() == pb.MediaKind_MEDIA_KIND_IMAGE {
		media.Kind = Image
	}
	copy(media.SHA256[:], m.GetSha256())
	return media
}

// timeFromProto is the zero time for a missing timestamp.
func timeFromProto(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

// GetMedia returns the record of mediaID, without its bytes. Retried while the server
// is unavailable.
func (c *Client) GetMedia(ctx context.Context, mediaID string) (Media, error) {
	if err := checkMediaID(mediaID); err != nil {
		return Media{}, err
	}
	response, err := retrying(c, ctx, func(ctx context.Context) (*pb.GetMediaResponse, error) {
		return c.media.GetMedia(ctx, &pb.GetMediaRequest{MediaId: mediaID})
	})
	if err != nil {
		return Media{}, err
	}
	return mediaFromProto(response.GetMedia()), nil
}

// Thumbnail is a thumbnail made by the server: at most 96, 320 or 640 pixels on its
// longer side, upright (EXIF orientation applied).
type Thumbnail struct {
	// ContentType is image/jpeg, or image/png for an image with transparency.
	ContentType string
	// Width and Height are in pixels.
	Width, Height uint32
	// Data is the encoded image.
	Data []byte
}

// Thumbnail returns the server's thumbnail of image mediaID, at most maxEdge pixels on
// its longer side after rounding up to 96, 320 or 640 (above 640: 640). Errors:
// ErrInvalidArgument for a maxEdge of 0 or less, ErrNotFound for an unknown or expired
// ID, ErrNotAnImage and ErrImageRefused for media the server does not thumbnail.
// Retried while the server is unavailable.
func (c *Client) Thumbnail(ctx context.Context, mediaID string, maxEdge int) (Thumbnail, error) {
	if err := checkMediaID(mediaID); err != nil {
		return Thumbnail{}, err
	}
	edge := int32(max(min(maxEdge, math.MaxInt32), math.MinInt32))
	response, err := retrying(c, ctx, func(ctx context.Context) (*pb.GetThumbnailResponse, error) {
		return c.media.GetThumbnail(ctx, &pb.GetThumbnailRequest{MediaId: mediaID, MaxEdge: edge})
	})
	if err != nil {
		return Thumbnail{}, err
	}
	return Thumbnail{
		ContentType: response.GetContentType(),
		Width:       response.GetWidth(),
		Height:      response.GetHeight(),
		Data:        response.GetData(),
	}, nil
}

// DeleteMedia deletes one of the caller's own media at once: from then on its ID is
// refused with ErrMediaDeleted to downloads, GetMedia, thumbnails and links (those
// minted before included), and new messages naming it with ErrMediaUnavailable;
// messages already sent with it still arrive. Deleting it again succeeds as the first
// time did. Another user's or an unknown media ID is ErrNotFound. The server frees the
// caller's quota at once and removes the bytes once no other media names the same
// content. Retried while the server is unavailable.
func (c *Client) DeleteMedia(ctx context.Context, mediaID string) error {
	if err := checkMediaID(mediaID); err != nil {
		return err
	}
	_, err := retrying(c, ctx, func(ctx context.Context) (*pb.DeleteMediaResponse, error) {
		return c.media.DeleteMedia(ctx, &pb.DeleteMediaRequest{MediaId: mediaID})
	})
	return err
}

// ImageMessageByMediaID is an image message for an already uploaded object, filled
// from its record (Agora's createImageMessageByMediaId).
func (c *Client) ImageMessageByMediaID(ctx context.Context, mediaID string) (ImageMessage, error) {
	media, err := c.GetMedia(ctx, mediaID)
	return media.ImageMessage(), err
}

// FileMessageByMediaID is a file message for an already uploaded object, filled from
// its record (Agora's createFileMessageByMediaId).
func (c *Client) FileMessageByMediaID(ctx context.Context, mediaID string) (FileMessage, error) {
	media, err := c.GetMedia(ctx, mediaID)
	return media.FileMessage(), err
}

// checkMediaID refuses anything but 32 lowercase hex characters before it is used in
// a request or a file name.
func checkMediaID(mediaID string) error {
	ok := len(mediaID) == 32
	for i := 0; ok && i < len(mediaID); i++ {
		c := mediaID[i]
		ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
	}
	if !ok {
		return invalidArgument(nil, "%q is not a media ID (32 lowercase hex characters)", mediaID)
	}
	return nil
}
