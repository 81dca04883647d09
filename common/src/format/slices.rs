//! Sliced blooms: an hour's block bloom filters turned sideways, so that a
//! cold needle query reads a few hundred bytes per hour instead of every
//! index in range.
//!
//! Stored as they are, the filters cost a reader one bitmap per block: the
//! whole 0.5% of raw that the indexes take. Sliced, row `i` of a group holds
//! bit `i` of every filter in the group, one bit per block, so testing a
//! token against all of an hour's blocks reads only the k rows its hashes
//! pick (one ranged GET each). Filters slice together only if they have the
//! same number of bits, so blocks are grouped by size (the block maker
//! rounds sizes to a few steps: `index::sliceable_bloom_bytes`), and each
//! group's rows are stored apart. A block keeps its own seed and number of
//! hash functions: its *shape*, the `bloomfilter` crate's header, from which
//! a reader learns which bits a token sets.
//!
//! Rows come in chunks of about 4 KiB, each with its own CRC32C, since a
//! reader fetches chunks, never the whole object: a damaged row must fail
//! its check, not hide a block that holds the needle. Like an index pack,
//! the object is a copy the hour's listing must vouch for, block by block.
//! Byte layout: `docs/FORMAT.md`.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use super::index::BloomFilter;
use super::vint::{check_crc32c_at, push_crc32c, write_bytes_u32, Cursor};
use super::FormatError;

pub const MAGIC: &[u8; 4] = b"SKBS";
pub const VERSION: u16 = 1;
/// Magic, version, flags and the head's length.
pub const PRELUDE_LEN: usize = 12;
/// Rows are stored in chunks of about this many bytes.
pub const CHUNK_BYTES: usize = 4096;
/// Most groups (filter sizes) one object holds: a reader reads k rows per
/// group, so blocks whose size is rarer than this are left out (and read
/// their own index).
pub const MAX_GROUPS: usize = 8;
/// A group must hold at least this share of an hour's blocks: each costs a
/// reader about k ranged GETs, which a few blocks (an app's last block of
/// the hour, small and with a small filter) are not worth; their indexes
/// are read instead.
pub const MIN_GROUP_SHARE: usize = 16;
/// Most bits a filter may have: 32 MiB, far above any block's budget. A
/// reader allocates a filter this size to learn a token's bits.
pub const MAX_BITS: u64 = 1 << 28;
/// Most blocks per object.
pub const MAX_BLOCKS: u32 = 1 << 20;
/// Rows are turned over about this many bytes at a time
/// ([`Plan::write_rows`]): twice this in memory, besides the filters.
pub const BAND_BYTES: usize = 32 << 20;

/// One block to slice: its index's name relative to the hour prefix, the
/// index object's size and format version, and its bloom filter.
pub struct Input<'a> {
    pub name: &'a str,
    pub index_size: u64,
    pub index_version: u16,
    pub bloom: &'a BloomFilter,
}

impl<'a> Input<'a> {
    /// What [`plan`] needs of it.
    pub fn column(&self) -> Column<'a> {
        Column {
            name: self.name,
            index_size: self.index_size,
            index_version: self.index_version,
            bits: self.bloom.bits(),
            header: self.bloom.header(),
        }
    }
}

/// Filters of one size, sliced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub bits: u64,
    pub columns: u32,
    pub chunk_rows: u32,
    /// Where the group's first chunk starts in the object.
    pub offset: u64,
}

impl Group {
    /// Bytes of one row: a bit per block.
    pub fn row_bytes(&self) -> u64 {
        u64::from(self.columns).div_ceil(8)
    }

    fn chunks(&self) -> u64 {
        self.bits.div_ceil(u64::from(self.chunk_rows))
    }

    fn body_len(&self) -> u64 {
        self.bits * self.row_bytes() + 4 * self.chunks()
    }

    /// The chunk that holds `row`, and its byte range in the object.
    pub fn chunk_of(&self, row: u64) -> (u64, Range<u64>) {
        let chunk = row / u64::from(self.chunk_rows);
        let full = u64::from(self.chunk_rows) * self.row_bytes() + 4;
        let start = self.offset + chunk * full;
        let rows = (self.bits.saturating_sub(chunk * u64::from(self.chunk_rows)))
            .min(u64::from(self.chunk_rows));
        (chunk, start..start + rows * self.row_bytes() + 4)
    }
}

/// A filter shape: the group its filters are in and the crate's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub group: u32,
    pub header: Vec<u8>,
}

/// One sliced block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub name: String,
    pub index_size: u64,
    pub index_version: u16,
    pub shape: u32,
    pub column: u32,
}

/// Everything but the rows: what a reader fetches first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub groups: Vec<Group>,
    pub shapes: Vec<Shape>,
    /// Sorted by name.
    pub blocks: Vec<Block>,
    /// The object's length, which the listing must agree with.
    pub total_len: u64,
}

/// Slices the filters of `inputs` (sorted by name, no name twice). Blocks
/// whose filter size is not among the [`MAX_GROUPS`] most common, is
/// shared by fewer than 1/[`MIN_GROUP_SHARE`] of the blocks, or is over
/// [`MAX_BITS`], are left out. Returns the object and how many blocks it
/// holds, or `None` if no block is left.
pub fn encode(inputs: &[Input<'_>]) -> Option<(Vec<u8>, usize)> {
    encode_with(inputs, (inputs.len() / MIN_GROUP_SHARE).max(1))
}

/// [`encode`], with groups of at least `min_columns` blocks (the format
/// does not care; a reader pays about k GETs a group).
pub fn encode_with(inputs: &[Input<'_>], min_columns: usize) -> Option<(Vec<u8>, usize)> {
    let columns: Vec<Column<'_>> = inputs.iter().map(Input::column).collect();
    let plan = plan(&columns, min_columns)?;
    let mut out = plan.head().to_vec();
    let filled: Result<(), std::convert::Infallible> = plan.write_rows(
        BAND_BYTES,
        |i, start, buf| {
            let start = start as usize;
            buf.copy_from_slice(&inputs[i].bloom.bitmap()[start..start + buf.len()]);
            Ok(())
        },
        |bytes| {
            out.extend_from_slice(bytes);
            Ok(())
        },
    );
    match filled {
        Ok(()) => Some((out, plan.blocks())),
        Err(never) => match never {},
    }
}

/// One block to slice, without its filter's bits: what the head needs.
/// [`plan`] takes these, so a caller with more filters than memory can
/// keep the bits elsewhere and hand them over a band at a time.
pub struct Column<'a> {
    pub name: &'a str,
    pub index_size: u64,
    pub index_version: u16,
    /// The filter's length in bits.
    pub bits: u64,
    /// The crate's header of the filter (its length, k and seed).
    pub header: &'a [u8],
}

/// What goes where in an object: its head, and which inputs fill each
/// group's columns, in column order.
pub struct Plan {
    head: Vec<u8>,
    groups: Vec<Group>,
    members: Vec<Vec<usize>>,
    blocks: usize,
}

/// Plans the object for `columns` (sorted by name, no name twice), with
/// groups of at least `min_columns` blocks; `None` if no block is left.
/// Which blocks are left out is as for [`encode`]; so is a group of more
/// than [`MAX_BLOCKS`].
pub fn plan(columns: &[Column<'_>], min_columns: usize) -> Option<Plan> {
    debug_assert!(columns.windows(2).all(|w| w[0].name < w[1].name));
    let mut by_bits: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, column) in columns.iter().enumerate() {
        if column.bits.is_multiple_of(8) && column.bits <= MAX_BITS {
            by_bits.entry(column.bits).or_default().push(i);
        }
    }
    let mut common: Vec<(u64, Vec<usize>)> = by_bits.into_iter().collect();
    common.sort_by_key(|(bits, members)| (std::cmp::Reverse(members.len()), *bits));
    common.truncate(MAX_GROUPS);
    common.retain(|(_, members)| {
        members.len() >= min_columns && members.len() <= MAX_BLOCKS as usize
    });
    common.sort_by_key(|(bits, _)| *bits);
    let mut groups = Vec::new();
    let mut shapes: Vec<Shape> = Vec::new();
    let mut shape_ids: HashMap<(u32, &[u8]), u32> = HashMap::new();
    // Input index -> (shape, column).
    let mut placed: BTreeMap<usize, (u32, u32)> = BTreeMap::new();
    for (g, (bits, members)) in common.iter().enumerate() {
        let g = g as u32;
        for (column, &i) in members.iter().enumerate() {
            let header = columns[i].header;
            let shape = *shape_ids.entry((g, header)).or_insert_with(|| {
                shapes.push(Shape {
                    group: g,
                    header: header.to_vec(),
                });
                shapes.len() as u32 - 1
            });
            placed.insert(i, (shape, column as u32));
        }
        let count = members.len() as u32;
        groups.push(Group {
            bits: *bits,
            columns: count,
            chunk_rows: chunk_rows_for(count),
            offset: 0,
        });
    }
    if placed.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // the head's length, below
    out.extend_from_slice(&(groups.len() as u32).to_le_bytes());
    for g in &groups {
        out.extend_from_slice(&g.bits.to_le_bytes());
        out.extend_from_slice(&g.columns.to_le_bytes());
        out.extend_from_slice(&g.chunk_rows.to_le_bytes());
    }
    out.extend_from_slice(&(shapes.len() as u32).to_le_bytes());
    for s in &shapes {
        out.extend_from_slice(&s.group.to_le_bytes());
        write_bytes_u32(&mut out, &s.header);
    }
    out.extend_from_slice(&(placed.len() as u32).to_le_bytes());
    for (&i, &(shape, column)) in &placed {
        let c = &columns[i];
        write_bytes_u32(&mut out, c.name.as_bytes());
        out.extend_from_slice(&c.index_size.to_le_bytes());
        out.extend_from_slice(&c.index_version.to_le_bytes());
        out.extend_from_slice(&shape.to_le_bytes());
        out.extend_from_slice(&column.to_le_bytes());
    }
    let head_len = out.len() as u32 + 4;
    out[8..12].copy_from_slice(&head_len.to_le_bytes());
    push_crc32c(&mut out);
    Some(Plan {
        head: out,
        groups,
        members: common.into_iter().map(|(_, members)| members).collect(),
        blocks: placed.len(),
    })
}

impl Plan {
    /// The object's first bytes, up to and including the head's CRC.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// How many blocks the object holds.
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// The object's length.
    pub fn object_len(&self) -> u64 {
        self.head.len() as u64 + self.groups.iter().map(Group::body_len).sum::<u64>()
    }

    /// Writes the rows that follow the head, group after group, a band of
    /// about `band_bytes` of rows at a time: `read(input, start, buf)`
    /// fills `buf` with the bytes of input `input`'s bitmap from byte
    /// `start` on, and `write` takes the object's next bytes. A band is
    /// whole chunks, and starts on a whole byte of every bitmap, so it
    /// holds about twice `band_bytes`: the band's rows, and the band of
    /// every column's bitmap.
    pub fn write_rows<E>(
        &self,
        band_bytes: usize,
        mut read: impl FnMut(usize, u64, &mut [u8]) -> Result<(), E>,
        mut write: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let (mut rows, mut bitmaps) = (Vec::new(), Vec::new());
        for (g, members) in self.groups.iter().zip(&self.members) {
            let row_bytes = g.row_bytes() as usize;
            // Bands of whole chunks and of whole bytes of each bitmap.
            let step = 8 * u64::from(g.chunk_rows);
            let band_rows = ((band_bytes / row_bytes) as u64 / step).max(1) * step;
            let mut first = 0;
            while first < g.bits {
                let end = g.bits.min(first.saturating_add(band_rows));
                let width = ((end - first) / 8) as usize;
                rows.clear();
                rows.resize(width * 8 * row_bytes, 0);
                // Each column's band of bits, one after another.
                bitmaps.resize(members.len() * width, 0);
                for (bitmap, &i) in bitmaps.chunks_mut(width).zip(members) {
                    read(i, first / 8, bitmap)?;
                }
                // Byte b of eight columns' bitmaps is an 8x8 block of
                // bits, which turned over is those columns' byte of rows
                // 8b..8b+8. Eight bytes of each bitmap are read at once,
                // so 64 rows at a time, whose writes stay close.
                for (at, rows64) in rows.chunks_mut(64 * row_bytes).enumerate() {
                    let b = 8 * at;
                    let n = (width - b).min(8);
                    for (byte, columns) in bitmaps.chunks(8 * width).enumerate() {
                        let mut words = [0u64; 8];
                        for (word, bitmap) in words.iter_mut().zip(columns.chunks(width)) {
                            let mut w = [0u8; 8];
                            w[..n].copy_from_slice(&bitmap[b..b + n]);
                            *word = u64::from_le_bytes(w);
                        }
                        for (k, eight_rows) in rows64.chunks_mut(8 * row_bytes).enumerate() {
                            let mut block = 0u64;
                            for (j, word) in words.iter().enumerate() {
                                block |= ((word >> (8 * k)) & 0xFF) << (8 * j);
                            }
                            let turned = transpose8(block).to_le_bytes();
                            for (i, row_byte) in turned.into_iter().enumerate() {
                                eight_rows[i * row_bytes + byte] = row_byte;
                            }
                        }
                    }
                }
                for chunk in rows.chunks(g.chunk_rows as usize * row_bytes) {
                    write(chunk)?;
                    write(&crc32c::crc32c(chunk).to_le_bytes())?;
                }
                first = end;
            }
        }
        Ok(())
    }
}

/// Turns an 8x8 block of bits over: bit `i` of byte `j` (little-endian)
/// becomes bit `j` of byte `i` (Hacker's Delight, 7-3).
fn transpose8(mut x: u64) -> u64 {
    let mut t = (x ^ (x >> 7)) & 0x00AA_00AA_00AA_00AA;
    x ^= t ^ (t << 7);
    t = (x ^ (x >> 14)) & 0x0000_CCCC_0000_CCCC;
    x ^= t ^ (t << 14);
    t = (x ^ (x >> 28)) & 0x0000_0000_F0F0_F0F0;
    x ^ t ^ (t << 28)
}

/// Rows per chunk for a group of `columns` blocks: about [`CHUNK_BYTES`].
fn chunk_rows_for(columns: u32) -> u32 {
    (CHUNK_BYTES as u64 / u64::from(columns).div_ceil(8)).max(1) as u32
}

/// The head's length, from the first [`PRELUDE_LEN`] bytes of an object.
pub fn head_len(prelude: &[u8]) -> Result<usize, FormatError> {
    let mut c = Cursor::new(prelude);
    c.object_start(MAGIC, VERSION)?;
    let len = c.u32_le()? as usize;
    if len < PRELUDE_LEN + 4 {
        return Err(FormatError::corrupt(
            8,
            format!("head length {len} is too short"),
        ));
    }
    Ok(len)
}

impl Head {
    /// Decodes the head from the start of an object (`bytes` may run on
    /// into the rows), after checking its CRC and that every count and
    /// reference in it is consistent.
    pub fn decode(bytes: &[u8]) -> Result<Head, FormatError> {
        let len = head_len(bytes)?;
        let Some(head) = bytes.get(..len) else {
            return Err(FormatError::Truncated {
                offset: 0,
                needed: len,
                available: bytes.len(),
            });
        };
        check_crc32c_at(head, len - 4)?;
        let mut c = Cursor::new(&head[PRELUDE_LEN..len - 4]);
        let at = |c: &Cursor<'_>| PRELUDE_LEN + c.position();
        let group_count = c.u32_le()? as usize;
        if group_count == 0 || group_count > MAX_GROUPS {
            return Err(FormatError::corrupt(
                at(&c),
                format!("{group_count} groups"),
            ));
        }
        let mut groups = Vec::with_capacity(group_count);
        let mut offset = len as u64;
        for _ in 0..group_count {
            let here = at(&c);
            let (bits, columns, chunk_rows) = (c.u64_le()?, c.u32_le()?, c.u32_le()?);
            if bits == 0 || !bits.is_multiple_of(8) || bits > MAX_BITS {
                return Err(FormatError::corrupt(
                    here,
                    format!("a group of {bits} bits"),
                ));
            }
            // Chunks are of the one size a writer picks, so a reader's
            // fetches stay small.
            if columns == 0 || columns > MAX_BLOCKS || chunk_rows != chunk_rows_for(columns) {
                return Err(FormatError::corrupt(
                    here,
                    format!("a group of {columns} columns in chunks of {chunk_rows} rows"),
                ));
            }
            let group = Group {
                bits,
                columns,
                chunk_rows,
                offset,
            };
            offset += group.body_len();
            groups.push(group);
        }
        let shape_count = c.u32_le()? as usize;
        if shape_count > c.remaining() / 8 {
            return Err(FormatError::corrupt(
                at(&c),
                format!("{shape_count} shapes"),
            ));
        }
        let mut shapes = Vec::with_capacity(shape_count);
        for _ in 0..shape_count {
            let here = at(&c);
            let group = c.u32_le()?;
            if group as usize >= groups.len() {
                return Err(FormatError::corrupt(
                    here,
                    format!("a shape of group {group}"),
                ));
            }
            let header = c.bytes_u32()?.to_vec();
            shapes.push(Shape { group, header });
        }
        let block_count = c.u32_le()? as usize;
        if block_count > c.remaining() / 22 {
            return Err(FormatError::corrupt(
                at(&c),
                format!("{block_count} blocks"),
            ));
        }
        let mut blocks: Vec<Block> = Vec::with_capacity(block_count);
        let mut taken = std::collections::HashSet::new();
        for _ in 0..block_count {
            let here = at(&c);
            let name = c.str_u32()?.to_owned();
            let (index_size, index_version) = (c.u64_le()?, c.u16_le()?);
            let (shape, column) = (c.u32_le()?, c.u32_le()?);
            let Some(s) = shapes.get(shape as usize) else {
                return Err(FormatError::corrupt(
                    here,
                    format!("block of shape {shape}"),
                ));
            };
            if column >= groups[s.group as usize].columns || !taken.insert((s.group, column)) {
                return Err(FormatError::corrupt(
                    here,
                    format!(
                        "column {column} of group {} is out of range or taken",
                        s.group
                    ),
                ));
            }
            if blocks.last().is_some_and(|prev| prev.name >= name) {
                return Err(FormatError::corrupt(
                    here,
                    format!("block {name:?} is out of order or repeated"),
                ));
            }
            blocks.push(Block {
                name,
                index_size,
                index_version,
                shape,
                column,
            });
        }
        if !c.is_empty() {
            return Err(FormatError::corrupt(
                at(&c),
                "trailing bytes after the last block",
            ));
        }
        Ok(Head {
            groups,
            shapes,
            blocks,
            total_len: offset,
        })
    }

    /// The block named `name` (relative to the hour prefix), if sliced.
    pub fn block(&self, name: &str) -> Option<&Block> {
        self.blocks
            .binary_search_by(|b| b.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.blocks[i])
    }

    /// Which bits each of the wanted blocks must have set to hold every
    /// token its index version asks for (`tokens[version]`), as a probe to
    /// fetch rows for. A block whose version has no tokens is not probed.
    pub fn probe<'h>(
        &'h self,
        wanted: impl IntoIterator<Item = &'h Block>,
        tokens: &[Vec<u64>],
    ) -> Result<Probe<'h>, FormatError> {
        let mut bits: HashMap<(u32, u16), Vec<u64>> = HashMap::new();
        let mut blocks = Vec::new();
        for b in wanted {
            let Some(t) = tokens
                .get(b.index_version as usize)
                .filter(|t| !t.is_empty())
            else {
                continue;
            };
            if let std::collections::hash_map::Entry::Vacant(e) =
                bits.entry((b.shape, b.index_version))
            {
                let shape = &self.shapes[b.shape as usize];
                let group_bits = self.groups[shape.group as usize].bits;
                e.insert(BloomFilter::bits_of(&shape.header, group_bits, t)?);
            }
            blocks.push(b);
        }
        Ok(Probe {
            head: self,
            bits,
            blocks,
        })
    }
}

/// The rows a lookup needs, and the verdict once they are fetched.
pub struct Probe<'h> {
    head: &'h Head,
    bits: HashMap<(u32, u16), Vec<u64>>,
    blocks: Vec<&'h Block>,
}

/// Fetched chunks' rows, by (group, chunk).
pub type Chunks = HashMap<(u32, u64), std::sync::Arc<Vec<u8>>>;

impl<'h> Probe<'h> {
    /// The chunks to fetch, as (group, chunk) and the byte range of each,
    /// in object order.
    pub fn chunks(&self) -> Vec<((u32, u64), Range<u64>)> {
        let mut out = BTreeMap::new();
        for (&(shape, _), bits) in &self.bits {
            let g = self.head.shapes[shape as usize].group;
            let group = &self.head.groups[g as usize];
            for &bit in bits {
                let (chunk, range) = group.chunk_of(bit);
                out.insert((g, chunk), range);
            }
        }
        out.into_iter().collect()
    }

    /// The probed blocks that certainly hold no match, given every chunk
    /// [`chunks`](Self::chunks) named (checked with [`chunk_rows`]).
    pub fn ruled_out(&self, chunks: &Chunks) -> Vec<&'h Block> {
        self.blocks
            .iter()
            .copied()
            .filter(|b| {
                let g = self.head.shapes[b.shape as usize].group;
                let group = &self.head.groups[g as usize];
                let (byte, bit) = ((b.column / 8) as usize, 1u8 << (b.column % 8));
                // The block's bit in `row`: `None` if its chunk was not
                // fetched or is short, which rules nothing out.
                let bit_of = |row: u64| {
                    let chunk = row / u64::from(group.chunk_rows);
                    let in_chunk = row % u64::from(group.chunk_rows);
                    let rows = chunks.get(&(g, chunk))?;
                    let at = in_chunk as usize * group.row_bytes() as usize + byte;
                    Some(rows.get(at)? & bit != 0)
                };
                let mut clear = false;
                for &row in &self.bits[&(b.shape, b.index_version)] {
                    match bit_of(row) {
                        None => return false,
                        Some(set) => clear |= !set,
                    }
                }
                clear
            })
            .collect()
    }
}

/// Checks a fetched chunk, which must be as long as the range it was
/// fetched for (a short read must not pass as rows of clear bits), and its
/// trailing CRC32C; returns its rows.
pub fn chunk_rows(bytes: &[u8], range: &Range<u64>) -> Result<Vec<u8>, FormatError> {
    let wanted = range.end.saturating_sub(range.start);
    if bytes.len() as u64 != wanted || wanted < 4 {
        return Err(FormatError::Truncated {
            offset: 0,
            needed: wanted as usize,
            available: bytes.len(),
        });
    }
    let at = bytes.len() - 4;
    check_crc32c_at(bytes, at)?;
    Ok(bytes[..at].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::index::build_bloom_with_bytes;

    fn filter(tokens: &[u64], bytes: usize) -> BloomFilter {
        BloomFilter::decode(&build_bloom_with_bytes(tokens.iter().copied(), bytes)).unwrap()
    }

    /// Blocks `b0..b9`, block `i` holding tokens `i*100..i*100+50`, in
    /// filters of two sizes, plus one odd size.
    fn sample() -> (Vec<BloomFilter>, Vec<String>) {
        let filters: Vec<BloomFilter> = (0..10u64)
            .map(|i| {
                let tokens: Vec<u64> = (i * 100..i * 100 + 50).collect();
                filter(&tokens, if i % 2 == 0 { 64 } else { 96 })
            })
            .collect();
        let names = (0..10).map(|i| format!("app=a/b{i}.idx")).collect();
        (filters, names)
    }

    fn encode_sample(filters: &[BloomFilter], names: &[String]) -> Vec<u8> {
        let inputs: Vec<Input<'_>> = filters
            .iter()
            .zip(names)
            .enumerate()
            .map(|(i, (f, n))| Input {
                name: n,
                index_size: 1000 + i as u64,
                index_version: 2,
                bloom: f,
            })
            .collect();
        encode(&inputs).unwrap().0
    }

    /// Rows written a few at a time (down to the smallest band: 8 chunks)
    /// are the rows written a group at a time, and the planned length is
    /// the object's. Groups of 1,999 and 1,200 blocks have chunks of 16
    /// and 27 rows, so their filters of 768 and 1,024 bits are several
    /// bands, and a band of the second is not whole words of its bitmaps.
    #[test]
    fn transpose8_turns_bits_over() {
        let mut x = 0x0123_4567_89AB_CDEFu64;
        for _ in 0..1000 {
            let mut want = 0u64;
            for (j, i) in (0..8).flat_map(|j| (0..8).map(move |i| (j, i))) {
                want |= ((x >> (8 * j + i)) & 1) << (8 * i + j);
            }
            assert_eq!(transpose8(x), want, "{x:#x}");
            x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ 0x55;
        }
    }

    #[test]
    fn banded_rows_are_the_whole_rows() {
        let filters: Vec<BloomFilter> = (0..3199u64)
            .map(|i| filter(&[i, i + 7_000_000], if i < 1999 { 96 } else { 128 }))
            .collect();
        let names: Vec<String> = (0..3199).map(|i| format!("hour=00/b{i:05}.idx")).collect();
        let inputs: Vec<Input<'_>> = filters
            .iter()
            .zip(&names)
            .map(|(f, n)| Input {
                name: n,
                index_size: 10,
                index_version: 2,
                bloom: f,
            })
            .collect();
        let (whole, blocks) = encode_with(&inputs, 1).unwrap();
        assert_eq!(blocks, 3199);
        let columns: Vec<Column<'_>> = inputs.iter().map(Input::column).collect();
        let plan = plan(&columns, 1).unwrap();
        assert_eq!(plan.object_len(), whole.len() as u64);
        for band in [1, 250 * 200, 1 << 20] {
            let (mut out, mut reads) = (plan.head().to_vec(), 0);
            plan.write_rows(
                band,
                |i, start, buf| {
                    reads += 1;
                    let start = start as usize;
                    buf.copy_from_slice(&filters[i].bitmap()[start..start + buf.len()]);
                    Ok::<(), ()>(())
                },
                |b| {
                    out.extend_from_slice(b);
                    Ok(())
                },
            )
            .unwrap();
            assert!(out == whole, "band of {band} bytes");
            if band == 1 {
                // 768 bits in bands of 128 rows, 1024 in bands of 216.
                assert_eq!(reads, 1999 * 6 + 1200 * 5);
            }
        }
        // And the rows say what each filter says.
        for i in [0u64, 1998, 1999, 3198] {
            assert!(!ruled_out(&whole, &[i]).contains(&names[i as usize]));
        }
    }

    /// Answers a lookup for `tokens` from the object's bytes.
    fn ruled_out(bytes: &[u8], tokens: &[u64]) -> Vec<String> {
        let head = Head::decode(bytes).unwrap();
        assert_eq!(head.total_len, bytes.len() as u64);
        let tokens = vec![Vec::new(), Vec::new(), tokens.to_vec()];
        let probe = head.probe(&head.blocks, &tokens).unwrap();
        let chunks: Chunks = probe
            .chunks()
            .into_iter()
            .map(|(at, r)| {
                (
                    at,
                    chunk_rows(&bytes[r.start as usize..r.end as usize], &r)
                        .unwrap()
                        .into(),
                )
            })
            .collect();
        probe
            .ruled_out(&chunks)
            .iter()
            .map(|b| b.name.clone())
            .collect()
    }

    #[test]
    fn a_lookup_agrees_with_every_filter() {
        let (filters, names) = sample();
        let bytes = encode_sample(&filters, &names);
        let head = Head::decode(&bytes).unwrap();
        assert_eq!(head.groups.len(), 2);
        assert_eq!(head.blocks.len(), 10);
        for token_sets in [
            vec![305u64],
            vec![0, 49],
            vec![7, 907],
            vec![123_456],
            vec![],
        ] {
            let out = ruled_out(&bytes, &token_sets);
            for (f, n) in filters.iter().zip(&names) {
                let holds = token_sets.iter().all(|&t| f.may_contain(t));
                assert_eq!(
                    !out.contains(n),
                    holds || token_sets.is_empty(),
                    "{n} {token_sets:?}"
                );
            }
        }
        // The block that holds the token is never ruled out; the rest are.
        let out = ruled_out(&bytes, &[305]);
        assert!(!out.contains(&names[3]));
        assert!(out.len() >= 8, "{out:?}");
    }

    #[test]
    fn only_the_most_common_sizes_are_sliced() {
        let filters: Vec<BloomFilter> = (0..MAX_GROUPS + 3)
            .map(|i| filter(&[i as u64], 8 * (i + 1)))
            .chain((0..3).map(|i| filter(&[i], 8)))
            .collect();
        let names: Vec<String> = (0..filters.len()).map(|i| format!("b{i:02}")).collect();
        let bytes = encode_sample(&filters, &names);
        let head = Head::decode(&bytes).unwrap();
        assert_eq!(head.groups.len(), MAX_GROUPS);
        assert_eq!(
            head.groups.iter().find(|g| g.bits == 64).unwrap().columns,
            4
        );
        assert_eq!(head.blocks.len(), MAX_GROUPS + 3);
    }

    #[test]
    fn sizes_few_blocks_share_are_left_out() {
        let filters: Vec<BloomFilter> = (0..40)
            .map(|i| filter(&[i], 64))
            .chain([filter(&[7], 96), filter(&[8], 96), filter(&[9], 128)])
            .collect();
        let names: Vec<String> = (0..filters.len()).map(|i| format!("b{i:02}")).collect();
        let head = Head::decode(&encode_sample(&filters, &names)).unwrap();
        let groups: Vec<(u64, u32)> = head.groups.iter().map(|g| (g.bits, g.columns)).collect();
        assert_eq!(
            groups,
            vec![(512, 40), (768, 2)],
            "43 / 16 = 2 blocks at least"
        );
        assert_eq!(head.block("b42"), None);
        assert!(head.block("b41").is_some());

        // A day's: groups of at least the given number of blocks.
        let inputs: Vec<Input<'_>> = filters
            .iter()
            .zip(&names)
            .map(|(f, n)| Input {
                name: n,
                index_size: 1,
                index_version: 2,
                bloom: f,
            })
            .collect();
        let (bytes, n) = encode_with(&inputs, 3).unwrap();
        let head = Head::decode(&bytes).unwrap();
        assert_eq!(n, 40);
        assert_eq!(head.groups.len(), 1);
        assert_eq!(head.block("b41"), None);
        assert_eq!(encode_with(&inputs, 41), None, "no size shared by 41");
    }

    #[test]
    fn a_damaged_chunk_fails_its_check() {
        let (filters, names) = sample();
        let mut bytes = encode_sample(&filters, &names);
        let head = Head::decode(&bytes).unwrap();
        let (_, range) = head.groups[0].chunk_of(0);
        bytes[range.start as usize] ^= 1;
        let chunk = &bytes[range.start as usize..range.end as usize];
        assert!(chunk_rows(chunk, &range).is_err());
        // A short read is no chunk, even one whose CRC fits (that of no
        // bytes is 0).
        assert!(chunk_rows(&[0, 0, 0, 0], &range).is_err());
        let len = head_len(&bytes).unwrap();
        bytes[len - 5] ^= 1;
        assert!(Head::decode(&bytes).is_err());
    }

    #[test]
    fn a_missing_chunk_rules_nothing_out() {
        let (filters, names) = sample();
        let bytes = encode_sample(&filters, &names);
        let head = Head::decode(&bytes).unwrap();
        let tokens = vec![Vec::new(), Vec::new(), vec![305]];
        let probe = head.probe(&head.blocks, &tokens).unwrap();
        assert!(probe.ruled_out(&Chunks::new()).is_empty());
    }

    #[test]
    fn filters_with_other_hash_counts_keep_their_own_shape() {
        let a_tokens: Vec<u64> = (1..=20).collect();
        let b_tokens: Vec<u64> = (101..=140).collect();
        let a = filter(&a_tokens, 64);
        let b = filter(&b_tokens, 64);
        assert_ne!(a.header(), b.header(), "k differs");
        let names = ["x".to_owned(), "y".to_owned()];
        let bytes = encode_sample(&[a, b], &names);
        let head = Head::decode(&bytes).unwrap();
        assert_eq!((head.groups.len(), head.shapes.len()), (1, 2));
        assert_eq!(ruled_out(&bytes, &[1, 2]), vec!["y".to_owned()]);
        assert_eq!(ruled_out(&bytes, &[101, 140]), vec!["x".to_owned()]);
    }

    #[test]
    fn truncations_and_bad_preludes_are_errors() {
        let (filters, names) = sample();
        let bytes = encode_sample(&filters, &names);
        let len = head_len(&bytes).unwrap();
        for cut in [0, 3, 11, 12, len - 1] {
            assert!(Head::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flagged = bytes.clone();
        flagged[6] = 1;
        assert!(head_len(&flagged).is_err());
    }
}
