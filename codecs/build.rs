//! Build script: with the `svt-av1` feature, links the system SVT-AV1 encoder (found through
//! pkg-config, module `SvtAv1Enc`, version 1.4.x) and compiles a small C probe that reports the
//! C compiler's view of the structs the FFI mirrors, so tests and start-up can prove the Rust
//! layouts match the installed headers. Without the feature it does nothing.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "svt-av1")]
    svt::build();
}

#[cfg(feature = "svt-av1")]
mod svt {
    use std::path::PathBuf;

    /// Structs and fields (in declaration order) the probe reports, as `(struct, [fields])`.
    /// `src/encoder/svt.rs` mirrors exactly these; its tests compare name, offset and size of
    /// every field and the size of every struct.
    const STRUCTS: &[(&str, &[&str])] = &[
        (
            "EbSvtAv1EncConfiguration",
            &[
                "enc_mode",
                "intra_period_length",
                "intra_refresh_type",
                "hierarchical_levels",
                "pred_structure",
                "source_width",
                "source_height",
                "forced_max_frame_width",
                "forced_max_frame_height",
                "frame_rate_numerator",
                "frame_rate_denominator",
                "encoder_bit_depth",
                "encoder_color_format",
                "compressed_ten_bit_format",
                "high_dynamic_range_input",
                "profile",
                "tier",
                "level",
                "color_description_present_flag",
                "color_primaries",
                "transfer_characteristics",
                "matrix_coefficients",
                "color_range",
                "mastering_display",
                "content_light_level",
                "chroma_sample_position",
                "rate_control_mode",
                "qp",
                "use_qp_file",
                "target_bit_rate",
                "max_bit_rate",
                "vbv_bufsize",
                "max_qp_allowed",
                "min_qp_allowed",
                "vbr_bias_pct",
                "vbr_min_section_pct",
                "vbr_max_section_pct",
                "under_shoot_pct",
                "over_shoot_pct",
                "mbr_over_shoot_pct",
                "starting_buffer_level_ms",
                "optimal_buffer_level_ms",
                "maximum_buffer_size_ms",
                "rc_stats_buffer",
                "pass",
                "use_fixed_qindex_offsets",
                "qindex_offsets",
                "key_frame_chroma_qindex_offset",
                "key_frame_qindex_offset",
                "chroma_qindex_offsets",
                "luma_y_dc_qindex_offset",
                "chroma_u_dc_qindex_offset",
                "chroma_u_ac_qindex_offset",
                "chroma_v_dc_qindex_offset",
                "chroma_v_ac_qindex_offset",
                "enable_dlf_flag",
                "film_grain_denoise_strength",
                "film_grain_denoise_apply",
                "cdef_level",
                "enable_restoration_filtering",
                "enable_mfmv",
                "scene_change_detection",
                "restricted_motion_vector",
                "tile_columns",
                "tile_rows",
                "look_ahead_distance",
                "enable_tpl_la",
                "recode_loop",
                "screen_content_mode",
                "enable_adaptive_quantization",
                "enable_tf",
                "enable_overlays",
                "tune",
                "superres_mode",
                "superres_denom",
                "superres_kf_denom",
                "superres_qthres",
                "superres_kf_qthres",
                "superres_auto_search_type",
                "pred_struct",
                "enable_manual_pred_struct",
                "manual_pred_struct_entry_num",
                "fast_decode",
                "sframe_dist",
                "sframe_mode",
                "channel_id",
                "active_channel_count",
                "logical_processors",
                "pin_threads",
                "target_socket",
                "use_cpu_flags",
                "stat_report",
                "recon_enabled",
                "force_key_frames",
                "multiply_keyint",
                "resize_mode",
                "resize_denom",
                "resize_kf_denom",
                "enable_qm",
                "min_qm_level",
                "max_qm_level",
                "gop_constraint_rc",
            ],
        ),
        (
            "EbBufferHeaderType",
            &[
                "size",
                "p_buffer",
                "n_filled_len",
                "n_alloc_len",
                "p_app_private",
                "wrapper_ptr",
                "n_tick_count",
                "dts",
                "pts",
                "qp",
                "pic_type",
                "luma_sse",
                "cr_sse",
                "cb_sse",
                "flags",
                "luma_ssim",
                "cr_ssim",
                "cb_ssim",
                "metadata",
            ],
        ),
        (
            "EbSvtIOFormat",
            &[
                "luma",
                "cb",
                "cr",
                "luma_ext",
                "cb_ext",
                "cr_ext",
                "y_stride",
                "cr_stride",
                "cb_stride",
                "width",
                "height",
                "origin_x",
                "origin_y",
                "color_fmt",
                "bit_depth",
            ],
        ),
        (
            "struct EbSvtAv1MasteringDisplayInfo",
            &["r", "g", "b", "white_point", "max_luma", "min_luma"],
        ),
        ("struct EbContentLightLevel", &["max_cll", "max_fall"]),
        ("SvtAv1FixedBuf", &["buf", "sz"]),
        (
            "PredictionStructureConfigEntry",
            &[
                "temporal_layer_index",
                "decode_order",
                "ref_list0",
                "ref_list1",
            ],
        ),
    ];

    /// Writes the probe source: per struct, a table of `{name, offset, size}` and its `sizeof`,
    /// returned by `psmgate_svt_layout(index, &fields, &count)`.
    fn probe_source() -> String {
        let mut c = String::from(
            "#include <stddef.h>\n#include <EbSvtAv1Enc.h>\n\n\
             typedef struct { const char *name; size_t offset; size_t size; } PsmgateSvtField;\n\
             #define PSMGATE_FIELD(T, f) { #f, offsetof(T, f), sizeof(((T *)0)->f) }\n\n",
        );
        for (i, (ty, fields)) in STRUCTS.iter().enumerate() {
            c.push_str(&format!("static const PsmgateSvtField fields_{i}[] = {{\n"));
            for f in fields.iter() {
                c.push_str(&format!("    PSMGATE_FIELD({ty}, {f}),\n"));
            }
            c.push_str("};\n");
        }
        c.push_str(
            "\n/* Returns sizeof the struct with this index (0 past the end) and its field table. */\n\
             size_t psmgate_svt_layout(unsigned index, const PsmgateSvtField **fields, size_t *count) {\n\
             \x20   switch (index) {\n",
        );
        for (i, (ty, _)) in STRUCTS.iter().enumerate() {
            c.push_str(&format!(
                "    case {i}: *fields = fields_{i}; *count = sizeof(fields_{i}) / sizeof(fields_{i}[0]); \
                 return sizeof({ty});\n"
            ));
        }
        c.push_str("    default: *fields = NULL; *count = 0; return 0;\n    }\n}\n");
        c
    }

    pub fn build() {
        let lib = match pkg_config::Config::new().range_version("1.4".."1.5").probe("SvtAv1Enc") {
            Ok(lib) => lib,
            Err(e) => panic!(
                "feature `svt-av1` needs SVT-AV1 1.4.x (pkg-config module SvtAv1Enc, Debian package \
                 libsvtav1enc-dev); the FFI mirrors that version's structs exactly: {e}"
            ),
        };
        let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        let probe = out.join("svt_layout_probe.c");
        std::fs::write(&probe, probe_source()).expect("write SVT-AV1 layout probe");
        let mut build = cc::Build::new();
        build.file(&probe).warnings(true);
        for dir in &lib.include_paths {
            build.include(dir);
        }
        for (name, value) in &lib.defines {
            build.define(name, value.as_deref());
        }
        build.compile("psmgate_svt_layout_probe");
    }
}
