//! The sizes the node and the browser agree on, shared by the layers that enforce them
//! (the relay link, the media a turn brings, the chat channels).

/// The largest browser command the node takes: images (base64) and all. The media limits
/// below are set so that a command within them fits. A bigger frame is refused with a
/// `session.error` (see `relay::link`).
pub const MAX_COMMAND: usize = 48 << 20;
/// One image of a turn, decoded.
pub const MAX_IMAGE_BYTES: usize = 12 << 20;
/// Images of one command.
pub const MAX_IMAGES: usize = 20;
/// Decoded bytes of all the images of one command: with base64 (4/3) and the rest of
/// the command this fits [`MAX_COMMAND`].
pub const MAX_IMAGES_TOTAL: usize = 32 << 20;
const _: () = assert!(MAX_IMAGES_TOTAL / 3 * 4 + (4 << 20) <= MAX_COMMAND);
/// One attachment download, and how many a turn may bring.
pub const MAX_ATTACHMENT_BYTES: u64 = 50 << 20;
pub const MAX_ATTACHMENTS: usize = 10;
