//! The client capabilities psmgate lets the RDP server see.
//!
//! psmgate records an RDP session by decoding, passively, the graphics the server sends to the
//! client. The decoder (IronRDP's session layer) understands bitmap updates (interleaved RLE,
//! RDP 6.0 planar, raw), surface bits with RemoteFX or without a codec, and pointer updates,
//! but not drawing orders, glyphs, brushes or cached bitmaps referenced by orders. The server
//! only uses what the client announces in its Client Confirm Active PDU
//! ([MS-RDPBCGR] 2.2.1.13.2), so [`restrict`] takes the client's capability sets away down to
//! what the decoder handles — the same choices IronRDP's own client makes — before the PDU is
//! forwarded. The client still receives a stream it can render: everything left is a subset of
//! what it announced.
//!
//! [MS-RDPBCGR]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-rdpbcgr/

use ironrdp_core::encode_vec;
use ironrdp_pdu::rdp::capability_sets::{
    CacheFlags, CapabilitySet, Codec, CodecProperty, GlyphSupportLevel, OffscreenBitmapCache,
    Order, OrderFlags, OrderSupportExFlags, SupportLevel, VirtualChannelFlags,
};

/// The codec id psmgate's decoder expects RemoteFX surface bits to carry (IronRDP's fixed
/// choice; the server tags surface bits with the id the client assigned in its Bitmap Codecs
/// capability set, [MS-RDPBCGR] 2.2.7.2.10.1.1).
const DECODABLE_REMOTEFX_CODEC_ID: u8 = 3;

/// `VCCAPS_COMPR_SC | VCCAPS_COMPR_CS_8K` ([MS-RDPBCGR] 2.2.7.1.10).
const VC_COMPRESSION: VirtualChannelFlags = VirtualChannelFlags::COMPRESSION_SERVER_TO_CLIENT
    .union(VirtualChannelFlags::COMPRESSION_CLIENT_TO_SERVER_8K);

/// `PERSISTENT_KEYS_EXPECTED_FLAG` ([MS-RDPBCGR] 2.2.7.1.4.2).
const PERSISTENT_KEYS: CacheFlags = CacheFlags::PERSISTENT_KEYS_EXPECTED_FLAG;

/// Offset of `textANSICodePage` in the encoded Order Capability Set body
/// ([MS-RDPBCGR] 2.2.7.1.3).
const ORDER_TEXT_ANSI_CODE_PAGE_OFFSET: usize = 80;

/// Restricts a client's capability sets to what psmgate's passive decoder can follow.
///
/// Changes, each reported by one note (an empty list means nothing changed):
///
/// - Order ([MS-RDPBCGR] 2.2.7.1.3): every `orderSupport` entry off, no extended orders, only the
///   mandatory `NEGOTIATEORDERSUPPORT | ZEROBOUNDSDELTASSUPPORT` flags; a set is added if the
///   client sent none. The server then draws with bitmap updates only.
/// - Revision 2 Bitmap Cache (2.2.7.1.4.2): `PERSISTENT_KEYS_EXPECTED_FLAG` cleared.
/// - Bitmap Cache Host Support (2.2.7.2.1) and Bitmap Cache V3 Codec Id (MS-RDPEGDI 2.2.1.1):
///   removed.
/// - Offscreen Bitmap Cache (2.2.7.1.9): unsupported. Glyph Cache (2.2.7.1.8): `GLYPH_SUPPORT_NONE`.
///   Brush (2.2.7.1.7): `BRUSH_DEFAULT`. DrawNineGrid Cache and GDI+ (MS-RDPEGDI 2.2.1.2, 2.2.1.3):
///   removed, as they only enable drawing orders.
/// - Bitmap Codecs (2.2.7.2.10): only RemoteFX with codec id 3 is kept; NSCodec, JPEG,
///   ImageRemoteFX, unknown codecs and RemoteFX under another id are removed.
/// - Virtual Channel (2.2.7.1.10): `VCCAPS_COMPR_SC` and `VCCAPS_COMPR_CS_8K` cleared.
///
/// Everything else (General, Bitmap, Pointer, Large Pointer, Input, Surface Commands,
/// Multifragment Update, Frame Acknowledge, Sound, Rail, Window List, …) is kept as the client
/// sent it. General needs no change: its compression fields are always encoded as zero, and bulk
/// compression is negotiated in the Client Info PDU, where psmgate turns it off. The
/// fast-path output flag stays as the client set it.
///
/// The function is idempotent: a second call changes nothing and returns no notes.
pub fn restrict(caps: &mut Vec<CapabilitySet>) -> Vec<String> {
    let mut notes = Vec::new();

    caps.retain(|cap| {
        let removed = match cap {
            CapabilitySet::BitmapCacheHostSupport(_) => "bitmap cache host support removed",
            CapabilitySet::BitmapCacheV3(_) => "bitmap cache v3 codec id removed",
            CapabilitySet::DrawNineGridCache(_) => "DrawNineGrid cache removed",
            CapabilitySet::DrawGdiPlus(_) => "GDI+ drawing removed",
            _ => return true,
        };
        notes.push(removed.to_owned());
        false
    });

    let mut has_order = false;
    for cap in caps.iter_mut() {
        match cap {
            CapabilitySet::Order(order) => {
                has_order = true;
                let restricted = restricted_order(order_code_page(order));
                if *order != restricted {
                    *order = restricted;
                    notes.push("drawing orders disabled".to_owned());
                }
            }
            CapabilitySet::BitmapCacheRev2(cache)
                if cache.cache_flags.contains(PERSISTENT_KEYS) =>
            {
                cache.cache_flags.remove(PERSISTENT_KEYS);
                notes.push("persistent bitmap cache disabled".to_owned());
            }
            CapabilitySet::OffscreenBitmapCache(cache) => {
                let disabled = OffscreenBitmapCache {
                    is_supported: false,
                    cache_size: 0,
                    cache_entries: 0,
                };
                if *cache != disabled {
                    *cache = disabled;
                    notes.push("offscreen bitmap cache disabled".to_owned());
                }
            }
            CapabilitySet::GlyphCache(cache)
                if cache.glyph_support_level != GlyphSupportLevel::None =>
            {
                cache.glyph_support_level = GlyphSupportLevel::None;
                notes.push("glyph cache disabled".to_owned());
            }
            CapabilitySet::Brush(brush) if brush.support_level != SupportLevel::Default => {
                brush.support_level = SupportLevel::Default;
                notes.push("brush support reduced to default".to_owned());
            }
            CapabilitySet::BitmapCodecs(codecs) => {
                codecs.0.retain(|codec| {
                    if is_decodable_codec(codec) {
                        true
                    } else {
                        notes.push(format!(
                            "bitmap codec {} (id {}) removed",
                            codec_name(codec),
                            codec.id
                        ));
                        false
                    }
                });
            }
            CapabilitySet::VirtualChannel(vc) if vc.flags.intersects(VC_COMPRESSION) => {
                vc.flags.remove(VC_COMPRESSION);
                notes.push("virtual channel compression disabled".to_owned());
            }
            _ => {}
        }
    }

    if !has_order {
        caps.push(CapabilitySet::Order(restricted_order(0)));
        notes.push("order capability set added with drawing orders disabled".to_owned());
    }

    notes
}

/// An Order Capability Set announcing no drawing order, as IronRDP's client sends it.
fn restricted_order(text_ansi_code_page: u16) -> Order {
    Order::new(
        OrderFlags::NEGOTIATE_ORDER_SUPPORT | OrderFlags::ZERO_BOUNDS_DELTAS_SUPPORT,
        OrderSupportExFlags::empty(),
        0,
        text_ansi_code_page,
    )
}

/// The `textANSICodePage` the client announced (the field is not otherwise readable).
fn order_code_page(order: &Order) -> u16 {
    encode_vec(order)
        .ok()
        .and_then(|bytes| {
            let field = bytes
                .get(ORDER_TEXT_ANSI_CODE_PAGE_OFFSET..ORDER_TEXT_ANSI_CODE_PAGE_OFFSET + 2)?;
            Some(u16::from_le_bytes(field.try_into().ok()?))
        })
        .unwrap_or(0)
}

/// Whether the passive decoder handles surface bits tagged with this codec.
fn is_decodable_codec(codec: &Codec) -> bool {
    matches!(codec.property, CodecProperty::RemoteFx(_)) && codec.id == DECODABLE_REMOTEFX_CODEC_ID
}

fn codec_name(codec: &Codec) -> &'static str {
    match codec.property {
        CodecProperty::NsCodec(_) => "NSCodec",
        CodecProperty::RemoteFx(_) => "RemoteFX",
        CodecProperty::ImageRemoteFx(_) => "ImageRemoteFX",
        CodecProperty::Ignore => "Ignore",
        CodecProperty::None => "unknown",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use ironrdp_pdu::rdp::capability_sets::{
        Bitmap, BitmapCache, BitmapCacheRev2, BitmapCodecs, BitmapDrawingFlags, Brush,
        CacheDefinition, CacheEntry, CaptureFlags, CellInfo, CmdFlags, EntropyBits,
        FrameAcknowledge, General, GeneralExtraFlags, GlyphCache, Input, InputFlags, LargePointer,
        LargePointerSupportFlags, MajorPlatformType, MultifragmentUpdate, NsCodec,
        OrderSupportIndex, Pointer, RemoteFxContainer, RfxCaps, RfxCapset, RfxClientCapsContainer,
        RfxICap, RfxICapFlags, Sound, SoundFlags, SurfaceCommands, VirtualChannel,
        BITMAP_CACHE_ENTRIES_NUM, GLYPH_CACHE_NUM,
    };
    use proptest::prelude::*;

    use super::*;

    fn remotefx(id: u8) -> Codec {
        Codec {
            id,
            property: CodecProperty::RemoteFx(RemoteFxContainer::ClientContainer(
                RfxClientCapsContainer {
                    capture_flags: CaptureFlags::CARDP_CAPS_CAPTURE_NON_CAC,
                    caps_data: RfxCaps(RfxCapset(vec![RfxICap {
                        flags: RfxICapFlags::empty(),
                        entropy_bits: EntropyBits::Rlgr3,
                    }])),
                },
            )),
        }
    }

    fn nscodec(id: u8) -> Codec {
        Codec {
            id,
            property: CodecProperty::NsCodec(NsCodec {
                is_dynamic_fidelity_allowed: true,
                is_subsampling_allowed: true,
                color_loss_level: 3,
            }),
        }
    }

    fn orders_enabled() -> Order {
        let mut order = Order::new(
            OrderFlags::NEGOTIATE_ORDER_SUPPORT
                | OrderFlags::ZERO_BOUNDS_DELTAS_SUPPORT
                | OrderFlags::COLOR_INDEX_SUPPORT
                | OrderFlags::ORDER_FLAGS_EXTRA_FLAGS,
            OrderSupportExFlags::CACHE_BITMAP_REV3_SUPPORT
                | OrderSupportExFlags::ALTSEC_FRAME_MARKER_SUPPORT,
            230_400,
            1252,
        );
        for index in [
            OrderSupportIndex::DstBlt,
            OrderSupportIndex::PatBlt,
            OrderSupportIndex::ScrBlt,
            OrderSupportIndex::MemBlt,
            OrderSupportIndex::LineTo,
            OrderSupportIndex::Fast,
            OrderSupportIndex::FastGlyph,
            OrderSupportIndex::Index,
        ] {
            order.set_support_flag(index, true);
        }
        order
    }

    /// The capability sets IronRDP's client announces, plus what a full client (mstsc, FreeRDP)
    /// adds on top: drawing orders, caches, NSCodec and ImageRemoteFX, VC compression.
    pub(crate) fn rich_client_caps() -> Vec<CapabilitySet> {
        vec![
            CapabilitySet::General(General {
                major_platform_type: MajorPlatformType::WINDOWS,
                extra_flags: GeneralExtraFlags::FASTPATH_OUTPUT_SUPPORTED
                    | GeneralExtraFlags::NO_BITMAP_COMPRESSION_HDR,
                ..Default::default()
            }),
            CapabilitySet::Bitmap(Bitmap {
                pref_bits_per_pix: 32,
                desktop_width: 1920,
                desktop_height: 1080,
                desktop_resize_flag: true,
                drawing_flags: BitmapDrawingFlags::ALLOW_SKIP_ALPHA,
            }),
            CapabilitySet::Order(orders_enabled()),
            CapabilitySet::BitmapCache(BitmapCache {
                caches: [CacheEntry {
                    entries: 0,
                    max_cell_size: 0,
                }; BITMAP_CACHE_ENTRIES_NUM],
            }),
            CapabilitySet::BitmapCacheRev2(BitmapCacheRev2 {
                cache_flags: CacheFlags::PERSISTENT_KEYS_EXPECTED_FLAG
                    | CacheFlags::ALLOW_CACHE_WAITING_LIST_FLAG,
                num_cell_caches: 3,
                cache_cell_info: [CellInfo {
                    num_entries: 600,
                    is_cache_persistent: true,
                }; 5],
            }),
            CapabilitySet::BitmapCacheHostSupport(vec![1, 0, 0, 0]),
            CapabilitySet::Input(Input {
                input_flags: InputFlags::all(),
                keyboard_layout: 0x409,
                keyboard_type: None,
                keyboard_subtype: 0,
                keyboard_function_key: 12,
                keyboard_ime_filename: String::new(),
            }),
            CapabilitySet::Pointer(Pointer {
                color_pointer_cache_size: 25,
                pointer_cache_size: 25,
            }),
            CapabilitySet::Brush(Brush {
                support_level: SupportLevel::ColorFull,
            }),
            CapabilitySet::GlyphCache(GlyphCache {
                glyph_cache: [CacheDefinition {
                    entries: 254,
                    max_cell_size: 4,
                }; GLYPH_CACHE_NUM],
                frag_cache: CacheDefinition {
                    entries: 256,
                    max_cell_size: 256,
                },
                glyph_support_level: GlyphSupportLevel::Encode,
            }),
            CapabilitySet::OffscreenBitmapCache(OffscreenBitmapCache {
                is_supported: true,
                cache_size: 7680,
                cache_entries: 2000,
            }),
            CapabilitySet::VirtualChannel(VirtualChannel {
                flags: VirtualChannelFlags::COMPRESSION_SERVER_TO_CLIENT
                    | VirtualChannelFlags::COMPRESSION_CLIENT_TO_SERVER_8K,
                chunk_size: Some(1600),
            }),
            CapabilitySet::Sound(Sound {
                flags: SoundFlags::BEEPS,
            }),
            CapabilitySet::DrawNineGridCache(vec![2, 0, 0, 0, 0x90, 0x01, 0x00, 0x01]),
            CapabilitySet::DrawGdiPlus(vec![0; 36]),
            CapabilitySet::BitmapCacheV3(vec![0x05]),
            CapabilitySet::LargePointer(LargePointer {
                flags: LargePointerSupportFlags::UP_TO_96X96_PIXELS
                    | LargePointerSupportFlags::UP_TO_384X384_PIXELS,
            }),
            CapabilitySet::SurfaceCommands(SurfaceCommands {
                flags: CmdFlags::SET_SURFACE_BITS
                    | CmdFlags::STREAM_SURFACE_BITS
                    | CmdFlags::FRAME_MARKER,
            }),
            CapabilitySet::BitmapCodecs(BitmapCodecs(vec![
                nscodec(1),
                remotefx(3),
                Codec {
                    id: 5,
                    property: CodecProperty::ImageRemoteFx(RemoteFxContainer::ClientContainer(
                        RfxClientCapsContainer {
                            capture_flags: CaptureFlags::empty(),
                            caps_data: RfxCaps(RfxCapset(vec![RfxICap {
                                flags: RfxICapFlags::CODEC_MODE,
                                entropy_bits: EntropyBits::Rlgr1,
                            }])),
                        },
                    )),
                },
                Codec {
                    id: 9,
                    property: CodecProperty::None,
                },
            ])),
            CapabilitySet::FrameAcknowledge(FrameAcknowledge {
                max_unacknowledged_frame_count: 2,
            }),
            CapabilitySet::MultiFragmentUpdate(MultifragmentUpdate {
                max_request_size: 8 * 1024 * 1024,
            }),
        ]
    }

    fn find<T>(caps: &[CapabilitySet], f: impl Fn(&CapabilitySet) -> Option<&T>) -> Option<&T> {
        caps.iter().find_map(f)
    }

    #[test]
    fn restricts_a_rich_client_to_decodable_graphics() {
        let mut caps = rich_client_caps();
        let notes = restrict(&mut caps);

        for expected in [
            "drawing orders disabled",
            "persistent bitmap cache disabled",
            "bitmap cache host support removed",
            "bitmap cache v3 codec id removed",
            "offscreen bitmap cache disabled",
            "glyph cache disabled",
            "brush support reduced to default",
            "DrawNineGrid cache removed",
            "GDI+ drawing removed",
            "virtual channel compression disabled",
            "bitmap codec NSCodec (id 1) removed",
            "bitmap codec ImageRemoteFX (id 5) removed",
            "bitmap codec unknown (id 9) removed",
        ] {
            assert!(
                notes.iter().any(|n| n == expected),
                "missing note {expected:?} in {notes:?}"
            );
        }

        // Orders: nothing supported, exactly what IronRDP's client announces.
        let order = find(&caps, |c| match c {
            CapabilitySet::Order(o) => Some(o),
            _ => None,
        })
        .expect("order set kept");
        let mut probe = order.clone();
        for index in [
            OrderSupportIndex::DstBlt,
            OrderSupportIndex::MemBlt,
            OrderSupportIndex::Fast,
            OrderSupportIndex::FastGlyph,
            OrderSupportIndex::Index,
        ] {
            assert!(!probe.get_support_flag(index));
        }
        let bytes = encode_vec(order).expect("encode order");
        assert!(
            bytes[32..64].iter().all(|b| *b == 0),
            "orderSupport all zero"
        );
        assert_eq!(
            u16::from_le_bytes([bytes[30], bytes[31]]),
            0x000A,
            "mandatory order flags only"
        );
        assert_eq!(
            u16::from_le_bytes([bytes[66], bytes[67]]),
            0,
            "no extended orders"
        );
        assert_eq!(
            u16::from_le_bytes([bytes[80], bytes[81]]),
            1252,
            "code page preserved"
        );

        // Codecs: RemoteFX only.
        let codecs = find(&caps, |c| match c {
            CapabilitySet::BitmapCodecs(b) => Some(b),
            _ => None,
        })
        .expect("codecs kept");
        assert_eq!(codecs.0, vec![remotefx(3)]);

        // Removed sets are gone; kept ones are untouched.
        assert!(!caps.iter().any(|c| matches!(
            c,
            CapabilitySet::BitmapCacheHostSupport(_)
                | CapabilitySet::BitmapCacheV3(_)
                | CapabilitySet::DrawNineGridCache(_)
                | CapabilitySet::DrawGdiPlus(_)
        )));
        let original = rich_client_caps();
        for kept in [0usize, 1, 3, 6, 7, 12, 16, 17, 19, 20] {
            assert!(
                caps.contains(&original[kept]),
                "{:?} must be kept as is",
                original[kept]
            );
        }

        let rev2 = find(&caps, |c| match c {
            CapabilitySet::BitmapCacheRev2(b) => Some(b),
            _ => None,
        })
        .expect("rev2 kept");
        assert_eq!(rev2.cache_flags, CacheFlags::ALLOW_CACHE_WAITING_LIST_FLAG);

        let vc = find(&caps, |c| match c {
            CapabilitySet::VirtualChannel(v) => Some(v),
            _ => None,
        })
        .expect("vc kept");
        assert_eq!(vc.flags, VirtualChannelFlags::NO_COMPRESSION);
        assert_eq!(vc.chunk_size, Some(1600));

        let general = find(&caps, |c| match c {
            CapabilitySet::General(g) => Some(g),
            _ => None,
        })
        .expect("general kept");
        assert!(general
            .extra_flags
            .contains(GeneralExtraFlags::FASTPATH_OUTPUT_SUPPORTED));
    }

    #[test]
    fn restrict_is_idempotent() {
        let mut caps = rich_client_caps();
        let first = restrict(&mut caps);
        assert!(!first.is_empty());
        let once = caps.clone();
        let second = restrict(&mut caps);
        assert!(second.is_empty(), "second pass changed {second:?}");
        assert_eq!(caps, once);
    }

    #[test]
    fn the_kept_remotefx_id_is_the_one_the_decoder_dispatches_on() {
        use ironrdp_pdu::rdp::capability_sets::{CodecId, CODEC_ID_REMOTEFX};
        assert_eq!(
            CodecId::from_u8(DECODABLE_REMOTEFX_CODEC_ID),
            Some(CODEC_ID_REMOTEFX)
        );
    }

    #[test]
    fn remotefx_under_another_id_is_removed() {
        let mut caps = vec![
            CapabilitySet::Order(restricted_order(0)),
            CapabilitySet::BitmapCodecs(BitmapCodecs(vec![remotefx(7)])),
        ];
        let notes = restrict(&mut caps);
        assert_eq!(
            notes,
            vec!["bitmap codec RemoteFX (id 7) removed".to_owned()]
        );
        assert_eq!(
            caps[1],
            CapabilitySet::BitmapCodecs(BitmapCodecs(Vec::new()))
        );
    }

    #[test]
    fn a_missing_order_set_is_added() {
        let mut caps = vec![CapabilitySet::Pointer(Pointer {
            color_pointer_cache_size: 25,
            pointer_cache_size: 25,
        })];
        let notes = restrict(&mut caps);
        assert_eq!(notes.len(), 1);
        assert_eq!(caps.len(), 2);
        assert_eq!(caps[1], CapabilitySet::Order(restricted_order(0)));
        assert!(restrict(&mut caps).is_empty());
    }

    #[test]
    fn an_already_minimal_set_is_left_alone() {
        let mut caps = vec![
            CapabilitySet::Order(restricted_order(0)),
            CapabilitySet::Brush(Brush {
                support_level: SupportLevel::Default,
            }),
            CapabilitySet::BitmapCodecs(BitmapCodecs(vec![remotefx(3)])),
        ];
        let before = caps.clone();
        assert!(restrict(&mut caps).is_empty());
        assert_eq!(caps, before);
    }

    fn arb_cap() -> impl Strategy<Value = CapabilitySet> {
        let idx = 0..rich_client_caps().len();
        (idx, any::<bool>()).prop_map(|(i, orders)| {
            let mut cap = rich_client_caps().swap_remove(i);
            if orders {
                if let CapabilitySet::Order(_) = cap {
                    cap = CapabilitySet::Order(orders_enabled());
                }
            }
            cap
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn restrict_is_idempotent_on_any_selection(mut caps in proptest::collection::vec(arb_cap(), 0..24)) {
            restrict(&mut caps);
            let once = caps.clone();
            prop_assert!(restrict(&mut caps).is_empty());
            prop_assert_eq!(caps, once);
        }
    }
}
