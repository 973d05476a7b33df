//! The deterministic chunker against real media made with ffmpeg: independence from read sizes
//! and start offsets, the PTS wrap, splices, damage, and broadcast-like MPEG-2/AC-3 CBR input.

use ec_node_testkit::media;

use ec_node::chunk::Chunk;
use ec_node::time::UnixMillis;
use ec_node::ts::packet::PACKET_SIZE;
use media::*;

fn assert_increasing(chunks: &[Chunk]) {
    for pair in chunks.windows(2) {
        assert!(
            pair[0].index < pair[1].index,
            "indices not increasing: {} then {}",
            pair[0].index,
            pair[1].index
        );
    }
}

#[test]
fn read_size_does_not_change_chunks() {
    let ts = media("h264.ts", &H264_AAC.args());
    let reference = chunk_all(&ts);
    assert!(
        reference.len() >= 7,
        "20 s at D=2 s should give at least 7 chunks, got {}",
        reference.len()
    );
    for read in [1, 188, 1000, 7 * 188 + 3, 1 << 20, ts.len()] {
        let other = chunk_with(&ts, read, NOW);
        assert_eq!(other, reference, "read size {read}");
    }
}

#[test]
fn captures_starting_at_different_offsets_agree() {
    let ts = media("h264.ts", &H264_AAC.args());
    let whole = chunk_all(&ts);
    for seconds in [1.3, 3.0, 6.7] {
        // Start mid-packet, as a capture joining a live stream would.
        let offset = offset_at_seconds(&ts, seconds) + 77;
        let late = chunk_all(&ts[offset..]);
        // A late node waits for an anchor and one random-access point, then has every chunk.
        let shared = assert_agree(&whole, &late);
        assert_eq!(
            shared,
            late.len(),
            "a capture from {seconds} s has chunks the first lacks"
        );
        assert!(
            shared >= 3,
            "a capture from {seconds} s shares only {shared} chunks"
        );
    }
}

#[test]
fn chunks_are_self_contained_and_clean() {
    let ts = media("h264.ts", &H264_AAC.args());
    let chunks = chunk_all(&ts);
    for chunk in &chunks {
        assert_eq!(chunk.bytes.len() % PACKET_SIZE, 0);
        let pids = pids(&chunk.bytes);
        assert_eq!(
            &pids[..2],
            &[0x0000, 0x1000],
            "chunk {} must open with PAT and PMT",
            chunk.index
        );
        assert!(
            !chunk.flags.damaged()
                && !chunk.flags.discontinuity()
                && !chunk.flags.no_random_access()
        );
        assert!(
            (1990..=2010).contains(&chunk.duration_ms()),
            "duration {}",
            chunk.duration_ms()
        );
    }
    let path = write_temp("h264-chunk.ts", &chunks[2].bytes);
    assert!(first_video_frame_is_key(&path));
    assert_eq!(decode_errors(&path), "");
}

#[test]
fn the_pts_wrap_changes_nothing() {
    let ts = media("h264-wrap.ts", &H264_ACROSS_WRAP.args());
    // A node that started before the wrap, and one that started 16 s later (after it), each
    // resolving the wrap from its own system clock.
    let before = chunk_with(&ts, 65_536, NOW);
    let offset = offset_at_seconds(&ts, 16.0);
    let after = chunk_with(&ts[offset..], 65_536, UnixMillis(NOW.0 + 16_000));
    assert_increasing(&before);
    assert!(
        before.iter().all(|c| !c.flags.discontinuity()),
        "the wrap is not a discontinuity"
    );
    let wrapped = before.windows(2).any(|w| w[1].pts < w[0].pts);
    assert!(wrapped, "the clip should cross 2^33 inside a run");
    assert!(before.len() >= 12, "got {} chunks", before.len());
    assert!(assert_agree(&before, &after) >= 5);
}

#[test]
fn the_broadcaster_clock_beats_a_wrong_system_clock() {
    let ts = with_stt(
        &media("h264-wrap.ts", &H264_ACROSS_WRAP.args()),
        1_764_072_000,
    );
    let before = chunk_with(&ts, 65_536, NOW);
    let offset = offset_at_seconds(&ts, 16.0);
    // Twenty hours off: without the STT this node resolves the wrap count differently.
    let skewed = UnixMillis(NOW.0 + 20 * 3600 * 1000);
    let after = chunk_with(&ts[offset..], 65_536, skewed);
    assert!(assert_agree(&before, &after) >= 5);
    let without_stt = chunk_with(
        &media("h264-wrap.ts", &H264_ACROSS_WRAP.args())[offset..],
        65_536,
        skewed,
    );
    assert_ne!(
        by_index(&without_stt).keys().next(),
        by_index(&after).keys().next()
    );
}

#[test]
fn a_splice_back_in_time_is_flagged_and_indices_keep_increasing() {
    let mut ts = media("h264-600s.ts", &H264_AT_600S.args());
    ts.extend_from_slice(&media("h264.ts", &H264_AAC.args()));
    let chunks = chunk_all(&ts);
    assert_increasing(&chunks);
    let flagged: Vec<_> = chunks.iter().filter(|c| c.flags.discontinuity()).collect();
    assert_eq!(flagged.len(), 1, "exactly one chunk follows the splice");
    assert!(chunks.len() >= 9);
}

#[test]
fn damage_keeps_every_chunk_whose_random_access_point_survived() {
    let ts = media("h264.ts", &H264_AAC.args());
    let clean = chunk_all(&ts);
    let mut damaged = Vec::with_capacity(ts.len());
    let mut hit = Vec::new();
    // Inside chunks 2..5: drop one audio packet in one, and a garbage burst in another, both
    // half-way between two cut points.
    for (i, chunk) in clean.iter().enumerate().skip(2).take(2) {
        let middle = chunk.pts.ticks() + chunk.duration / 2;
        hit.push((i, middle));
    }
    let drop_at = offset_at_pts(&ts, hit[0].1);
    let garbage_at = offset_at_pts(&ts, hit[1].1);
    for (n, raw) in ts.chunks_exact(PACKET_SIZE).enumerate() {
        let at = n * PACKET_SIZE;
        if at == garbage_at {
            damaged.extend_from_slice(&[0x47, 0x00, 0x11, 0x47, 0xff, 0x00, 0x47][..]);
            damaged.extend(std::iter::repeat_n(0x5a, 1000));
        }
        if at == drop_at {
            continue;
        }
        damaged.extend_from_slice(raw);
    }
    damaged.truncate(damaged.len() - 1000); // a truncated tail too
    let got = chunk_all(&damaged);
    let (clean_idx, got_idx) = (by_index(&clean), by_index(&got));
    for (index, chunk) in &clean_idx {
        if *index == clean.last().unwrap().index.0 {
            continue; // the truncated tail may end the last chunk
        }
        let other = got_idx
            .get(index)
            .unwrap_or_else(|| panic!("chunk {index} lost"));
        let touched = hit.iter().any(|&(i, _)| clean[i].index.0 == *index);
        assert_eq!(
            other.flags.damaged(),
            touched,
            "damage flag of chunk {index}"
        );
        if !touched {
            assert!(
                chunk.bytes == other.bytes,
                "undamaged chunk {index} differs"
            );
        }
    }
}

/// Offset of the first packet of the video PES whose PTS is at least `pts` (approximately).
fn offset_at_pts(ts: &[u8], pts: u64) -> usize {
    use ec_node::ts::packet::Packet;
    use ec_node::ts::pes::PesHeader;
    for (i, raw) in ts.chunks_exact(PACKET_SIZE).enumerate() {
        let p = Packet::parse(raw.try_into().unwrap()).unwrap();
        if p.pid().value() == 0x101 && p.payload_unit_start() {
            if let Ok(Some(h)) = PesHeader::parse(p.payload()) {
                if h.pts.is_some_and(|x| x.ticks() >= pts) {
                    return i * PACKET_SIZE;
                }
            }
        }
    }
    panic!("no PES at pts {pts}");
}

#[test]
fn broadcast_like_mpeg2_ac3_cbr() {
    let ts = media("atsc.ts", &atsc_mpeg2_ac3(12));
    let chunks = chunk_all(&ts);
    assert!(chunks.len() >= 4, "got {} chunks", chunks.len());
    let input_packets = ts.len() / PACKET_SIZE;
    let output: usize = chunks.iter().map(|c| c.bytes.len() / PACKET_SIZE).sum();
    assert!(
        output < input_packets * 2 / 3,
        "null packets must be stripped"
    );
    for chunk in &chunks {
        let pids = pids(&chunk.bytes);
        assert_eq!(&pids[..2], &[0x0000, 0x0030]);
        assert!(!pids.contains(&0x1fff));
        assert!(!chunk.flags.damaged());
    }
    let path = write_temp("atsc-chunk.ts", &chunks[1].bytes);
    assert!(first_video_frame_is_key(&path));
    let offset = offset_at_seconds(&ts, 2.5) + 1;
    assert!(assert_agree(&chunks, &chunk_with(&ts[offset..], 4096, NOW)) >= 2);
}

#[test]
fn without_random_access_for_three_steps_the_chunk_is_cut_and_flagged() {
    let ts = media("h264-long-gop.ts", &H264_LONG_GOP.args());
    let chunks = chunk_all(&ts);
    assert_increasing(&chunks);
    let forced: Vec<_> = chunks
        .iter()
        .filter(|c| c.flags.no_random_access())
        .collect();
    assert!(!forced.is_empty(), "10 s GOPs at D = 2 s need forced cuts");
    assert!(
        chunks.iter().any(|c| !c.flags.no_random_access()),
        "keyframes still start chunks"
    );
    for chunk in &chunks {
        assert!(
            chunk.duration_ms() <= 6100,
            "chunk {} lasts {} ms",
            chunk.index,
            chunk.duration_ms()
        );
    }
    let offset = offset_at_seconds(&ts, 0.5);
    assert!(assert_agree(&chunks, &chunk_all(&ts[offset..])) >= 2);
}

#[test]
fn in_place_chunks_name_the_bytes_the_copying_chunker_builds() {
    use ec_node::chunk::{Chunker, ChunkerConfig, Spans};
    let h264 = media("h264.ts", &H264_AAC.args());
    let mut spliced = media("h264-600s.ts", &H264_AT_600S.args());
    spliced.extend_from_slice(&h264);
    // Garbage inside one chunk, a packet lost in another, a truncated tail.
    let mut damaged = h264.clone();
    let lost = offset_at_seconds(&h264, 9.0);
    damaged.drain(lost..lost + PACKET_SIZE);
    let garbage = offset_at_seconds(&h264, 5.0);
    damaged.splice(garbage..garbage, std::iter::repeat_n(0x47, 700));
    damaged.truncate(damaged.len() - 1000);
    let inputs = [
        ("h264", h264),
        ("spliced", spliced),
        ("damaged", damaged),
        ("atsc", media("atsc.ts", &atsc_mpeg2_ac3(12))),
        ("long gop", media("h264-long-gop.ts", &H264_LONG_GOP.args())),
    ];
    for (name, ts) in &inputs {
        for read in [1000, 7 * 188 + 3, 1 << 20] {
            let copied = chunk_with(ts, read, NOW);
            let mut chunker = Chunker::in_place(ChunkerConfig::default());
            let mut in_place: Vec<Chunk<Spans>> = Vec::new();
            for part in ts.chunks(read) {
                chunker.push(part, NOW);
                in_place.extend(std::iter::from_fn(|| chunker.poll_chunk()));
            }
            chunker.finish(NOW);
            in_place.extend(std::iter::from_fn(|| chunker.poll_chunk()));
            assert!(copied.len() >= 4, "{name}: only {} chunks", copied.len());
            let resolved: Vec<Chunk> = in_place
                .into_iter()
                .map(|c| Chunk {
                    index: c.index,
                    pts: c.pts,
                    duration: c.duration,
                    flags: c.flags,
                    bytes: c.bytes.to_vec(ts),
                })
                .collect();
            assert!(resolved == copied, "{name}, reads of {read}: chunks differ");
        }
    }
}
