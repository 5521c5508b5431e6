//! Manifests: the versioned catalog of a database (which tables exist, their schemas, their segments,
//! and the first WAL file still needed). Layout: FORMAT.md "Manifest".
//!
//! A commit writes `manifest/{version:020}.manifest` (fsync file and directory), then replaces `CURRENT`
//! (the version number) atomically (temporary file, fsync, rename, fsync directory). The rename is the
//! commit point: a crash before it leaves the previous version current; a manifest file newer than
//! `CURRENT` is an aborted commit and is deleted on open.
//!
//! [`apply_ops`] is the pure catalog step: it applies several operations to a copy of a manifest, all
//! or nothing, so a swap or a replace of several tables is one commit.

use std::path::{Path, PathBuf};

use crate::dir::{sync_dir, write_atomic, Dir};
use crate::error::{Result, StorageError};
use crate::format::{
    check_file_header, crc32, file_header, ByteReader, ByteWriter, FILE_HEADER_LEN, MANIFEST_MAGIC,
    MANIFEST_VERSION,
};
use crate::schema::{
    validate_name, ColumnDef, ColumnType, KeyType, ManifestVersion, MergeRule, PartitionId,
    SegmentId, TableId, TableSchema,
};

/// A segment as the catalog lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentMeta {
    /// Segment id (its file is `seg/{id:020}.seg`).
    pub id: SegmentId,
    /// Partition it covers.
    pub partition: PartitionId,
    /// Rows in it.
    pub rows: u64,
    /// File size.
    pub size_bytes: u64,
}

/// A table as the catalog lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    /// Stable id.
    pub id: TableId,
    /// Current name.
    pub name: String,
    /// Definition.
    pub schema: TableSchema,
    /// Segments, oldest first (merge rules such as LAST fold them in this order).
    pub segments: Vec<SegmentMeta>,
    /// A temporary table: held in memory only (its segments are never files), never written to a
    /// manifest file, gone when the database closes or crashes. A rename makes it permanent.
    pub temporary: bool,
}

/// One committed version of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// This version's number.
    pub version: ManifestVersion,
    /// Reader feature flags; a reader refuses a manifest with a flag it does not know.
    pub features: u64,
    /// The database's key type.
    pub key_type: KeyType,
    /// Ordinals per partition.
    pub partition_rows: u32,
    /// Next table id to hand out.
    pub next_table_id: u64,
    /// Next segment id to hand out.
    pub next_segment_id: u64,
    /// First WAL sequence number whose records are not in segments yet.
    pub wal_start: u64,
    /// Tables, sorted by id.
    pub tables: Vec<TableEntry>,
}

/// Feature flags this build understands.
pub const KNOWN_FEATURES: u64 = 0;

/// A change to the catalog; [`apply_ops`] applies a list of them atomically.
#[derive(Debug, Clone, PartialEq)]
pub enum CatalogOp {
    /// Create a table; with `if_not_exists`, an existing table is left as it is.
    Create {
        /// Table name.
        name: String,
        /// Definition.
        schema: TableSchema,
        /// Do nothing if the name exists.
        if_not_exists: bool,
    },
    /// Create a table, dropping any table of that name (a new, empty table with a new id).
    CreateOrReplace {
        /// Table name.
        name: String,
        /// Definition.
        schema: TableSchema,
    },
    /// Drop a table.
    Drop {
        /// Table name.
        name: String,
        /// No error if it does not exist.
        if_exists: bool,
    },
    /// Rename a table; the target name must be free.
    Rename {
        /// Current name.
        from: String,
        /// New name.
        to: String,
    },
    /// Exchange the names of two tables.
    Swap {
        /// One table.
        a: String,
        /// The other.
        b: String,
    },
    /// Add a column at the end of a table's schema. Rows written before read it as NULL; the
    /// table keeps its id, segments and unflushed appends.
    AddColumn {
        /// Table name.
        table: String,
        /// The new column.
        column: ColumnDef,
    },
    /// Create a temporary table (see [`TableEntry::temporary`]); with `or_replace`, any table of
    /// that name is dropped first.
    CreateTemporary {
        /// Table name.
        name: String,
        /// Definition.
        schema: TableSchema,
        /// Drop a table of that name first.
        or_replace: bool,
    },
    /// Drop `target` if it exists and rename `source` to it: publishes a table built under a
    /// scratch name (CREATE OR REPLACE TABLE .. AS). The table stays temporary if `source` is.
    Replace {
        /// The name being replaced.
        target: String,
        /// The table that takes its place.
        source: String,
    },
}

impl Manifest {
    /// The first manifest of a new database.
    pub fn initial(key_type: KeyType, partition_rows: u32) -> Manifest {
        Manifest {
            version: ManifestVersion(1),
            features: KNOWN_FEATURES,
            key_type,
            partition_rows,
            next_table_id: 1,
            next_segment_id: 1,
            wal_start: 1,
            tables: Vec::new(),
        }
    }

    /// The table called `name` (ASCII case-insensitive).
    pub fn table(&self, name: &str) -> Option<&TableEntry> {
        self.tables
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
    }

    /// The manifest without its temporary tables: what a manifest file holds.
    pub fn durable(&self) -> Manifest {
        let mut m = self.clone();
        m.tables.retain(|t| !t.temporary);
        m
    }

    /// Whether `self` and `other` hold the same durable catalog (tables, segments and WAL start),
    /// whatever their temporary tables and id counters: a commit that changes only temporary
    /// tables writes nothing.
    pub fn same_durable(&self, other: &Manifest) -> bool {
        self.wal_start == other.wal_start
            && self
                .tables
                .iter()
                .filter(|t| !t.temporary)
                .eq(other.tables.iter().filter(|t| !t.temporary))
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.tables
            .iter()
            .position(|t| t.name.eq_ignore_ascii_case(name))
    }

    /// Encodes the manifest file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut p = ByteWriter::new();
        p.u64(self.version.0);
        p.u64(self.features);
        p.u8(self.key_type.tag());
        p.u32(self.partition_rows);
        p.u64(self.next_table_id);
        p.u64(self.next_segment_id);
        p.u64(self.wal_start);
        let durable: Vec<&TableEntry> = self.tables.iter().filter(|t| !t.temporary).collect();
        p.u32(durable.len() as u32);
        for t in durable {
            p.u64(t.id.0);
            p.short_str(&t.name);
            p.short_str(&t.schema.key_name);
            p.u32(t.schema.columns.len() as u32);
            for c in &t.schema.columns {
                p.short_str(&c.name);
                p.u8(c.ty.tag());
                p.u8(c.rule.tag());
            }
            p.u32(t.segments.len() as u32);
            for s in &t.segments {
                p.u64(s.id.0);
                p.u32(s.partition.0);
                p.u64(s.rows);
                p.u64(s.size_bytes);
            }
        }
        let mut w = ByteWriter::new();
        w.bytes(&file_header(MANIFEST_MAGIC, MANIFEST_VERSION, 0));
        w.len_bytes(&p.buf);
        let crc = crc32(&w.buf);
        w.u32(crc);
        w.buf
    }

    /// Decodes and verifies a manifest file's bytes.
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Manifest> {
        let body_len = bytes
            .len()
            .checked_sub(4)
            .ok_or_else(|| StorageError::corrupt(path, 0, "file too short"))?;
        let (body, crc_bytes) = bytes.split_at(body_len);
        let mut c = ByteReader::at(path, crc_bytes, body_len as u64);
        let expected = c.u32()?;
        let got = crc32(body);
        if expected != got {
            return Err(StorageError::ChecksumMismatch {
                path: path.to_path_buf(),
                offset: 0,
                expected,
                got,
            });
        }
        check_file_header(
            path,
            body.get(..FILE_HEADER_LEN).unwrap_or(body),
            MANIFEST_MAGIC,
            MANIFEST_VERSION,
        )?;
        let mut outer = ByteReader::at(
            path,
            body.get(FILE_HEADER_LEN..).unwrap_or(&[]),
            FILE_HEADER_LEN as u64,
        );
        let payload = outer.len_bytes()?;
        outer.finish()?;
        let mut r = ByteReader::at(path, payload, FILE_HEADER_LEN as u64 + 4);
        let version = ManifestVersion(r.u64()?);
        let features = r.u64()?;
        if features & !KNOWN_FEATURES != 0 {
            return Err(r.error(format!(
                "unknown feature flags {features:#x}: written by a newer journeydb"
            )));
        }
        let kt = r.u8()?;
        let key_type =
            KeyType::from_tag(kt).ok_or_else(|| r.error(format!("unknown key type {kt}")))?;
        let partition_rows = r.u32()?;
        let next_table_id = r.u64()?;
        let next_segment_id = r.u64()?;
        let wal_start = r.u64()?;
        let ntables = r.count(8)?;
        let mut tables = Vec::with_capacity(ntables);
        for _ in 0..ntables {
            let id = TableId(r.u64()?);
            let name = r.short_str()?;
            let key_name = r.short_str()?;
            let ncols = r.count(4)?;
            let mut columns = Vec::with_capacity(ncols);
            for _ in 0..ncols {
                let name = r.short_str()?;
                let tt = r.u8()?;
                let ty = ColumnType::from_tag(tt)
                    .ok_or_else(|| r.error(format!("unknown column type {tt}")))?;
                let rt = r.u8()?;
                let rule = MergeRule::from_tag(rt)
                    .ok_or_else(|| r.error(format!("unknown merge rule {rt}")))?;
                columns.push(ColumnDef { name, ty, rule });
            }
            let nsegs = r.count(28)?;
            let mut segments = Vec::with_capacity(nsegs);
            for _ in 0..nsegs {
                segments.push(SegmentMeta {
                    id: SegmentId(r.u64()?),
                    partition: PartitionId(r.u32()?),
                    rows: r.u64()?,
                    size_bytes: r.u64()?,
                });
            }
            tables.push(TableEntry {
                id,
                name,
                schema: TableSchema { key_name, columns },
                segments,
                temporary: false,
            });
        }
        r.finish()?;
        Ok(Manifest {
            version,
            features,
            key_type,
            partition_rows,
            next_table_id,
            next_segment_id,
            wal_start,
            tables,
        })
    }
}

/// Applies `ops` in order to a copy of `base`; the result has the next version number. Any error
/// leaves nothing applied.
pub fn apply_ops(base: &Manifest, ops: &[CatalogOp]) -> Result<Manifest> {
    let mut m = base.clone();
    m.version = ManifestVersion(base.version.0 + 1);
    for op in ops {
        apply_one(&mut m, op)?;
    }
    m.tables.sort_by_key(|t| t.id);
    Ok(m)
}

fn new_table(m: &mut Manifest, name: &str, schema: &TableSchema, temporary: bool) -> Result<()> {
    validate_name(name)?;
    schema.validate()?;
    let id = TableId(m.next_table_id);
    m.next_table_id += 1;
    m.tables.push(TableEntry {
        id,
        name: name.to_string(),
        schema: schema.clone(),
        segments: Vec::new(),
        temporary,
    });
    Ok(())
}

/// Exchanges the names of two durable tables.
fn swap(m: &mut Manifest, a: &str, b: &str) -> Result<()> {
    let missing = |n: &str| StorageError::TableNotFound(n.to_string());
    let i = m.position(a).ok_or_else(|| missing(a))?;
    let j = m.position(b).ok_or_else(|| missing(b))?;
    if m.tables.get(i).is_some_and(|t| t.temporary) || m.tables.get(j).is_some_and(|t| t.temporary)
    {
        return Err(StorageError::Unsupported(format!(
            "SWAP WITH of a temporary table ({a}, {b}); RENAME it to publish it"
        )));
    }
    let na = m.tables.get(i).map(|t| t.name.clone()).unwrap_or_default();
    let nb = m.tables.get(j).map(|t| t.name.clone()).unwrap_or_default();
    if let Some(t) = m.tables.get_mut(i) {
        t.name = nb;
    }
    if let Some(t) = m.tables.get_mut(j) {
        t.name = na;
    }
    Ok(())
}

fn apply_one(m: &mut Manifest, op: &CatalogOp) -> Result<()> {
    let missing = |n: &str| StorageError::TableNotFound(n.to_string());
    match op {
        CatalogOp::Create {
            name,
            schema,
            if_not_exists,
        } => {
            if m.position(name).is_some() {
                return if *if_not_exists {
                    Ok(())
                } else {
                    Err(StorageError::TableExists(name.clone()))
                };
            }
            new_table(m, name, schema, false)
        }
        CatalogOp::CreateOrReplace { name, schema } => {
            if let Some(i) = m.position(name) {
                m.tables.remove(i);
            }
            new_table(m, name, schema, false)
        }
        CatalogOp::CreateTemporary {
            name,
            schema,
            or_replace,
        } => {
            if let Some(i) = m.position(name) {
                if !*or_replace {
                    return Err(StorageError::TableExists(name.clone()));
                }
                m.tables.remove(i);
            }
            new_table(m, name, schema, true)
        }
        CatalogOp::Drop { name, if_exists } => match m.position(name) {
            Some(i) => {
                m.tables.remove(i);
                Ok(())
            }
            None if *if_exists => Ok(()),
            None => Err(missing(name)),
        },
        CatalogOp::Rename { from, to } => {
            validate_name(to)?;
            let i = m.position(from).ok_or_else(|| missing(from))?;
            if let Some(j) = m.position(to) {
                if j != i {
                    return Err(StorageError::TableExists(to.clone()));
                }
            }
            if let Some(t) = m.tables.get_mut(i) {
                t.name = to.clone();
                // A temporary table renamed is published: the commit writes its segments.
                t.temporary = false;
            }
            Ok(())
        }
        CatalogOp::Swap { a, b } => swap(m, a, b),
        CatalogOp::AddColumn { table, column } => {
            let i = m.position(table).ok_or_else(|| missing(table))?;
            let t = m.tables.get_mut(i).ok_or_else(|| missing(table))?;
            let mut schema = t.schema.clone();
            schema.columns.push(column.clone());
            // The same checks as a new table's: a valid, unique name, and a rule the type allows.
            schema.validate()?;
            t.schema = schema;
            Ok(())
        }
        CatalogOp::Replace { target, source } => {
            let s = m.position(source).ok_or_else(|| missing(source))?;
            validate_name(target)?;
            let source_id = m.tables.get(s).map(|t| t.id);
            if let Some(t) = m.position(target) {
                if m.tables.get(t).map(|t| t.id) == source_id {
                    return Ok(());
                }
                m.tables.remove(t);
            }
            if let Some(t) = m.tables.iter_mut().find(|t| Some(t.id) == source_id) {
                t.name = target.clone();
            }
            Ok(())
        }
    }
}

/// `DIR/manifest`.
pub fn manifest_dir(db: &Path) -> PathBuf {
    db.join("manifest")
}

/// Path of manifest `version`.
pub fn manifest_path(db: &Path, version: ManifestVersion) -> PathBuf {
    manifest_dir(db).join(format!("{:020}.manifest", version.0))
}

/// Durably writes `m` and makes it current (the commit point is the rename of `CURRENT`).
pub fn commit_manifest(fs: &dyn Dir, db: &Path, m: &Manifest) -> Result<()> {
    prepare_manifest(fs, db, m)?;
    publish_manifest(fs, db)
}

/// The first half of [`commit_manifest`]: writes manifest `m` and a `CURRENT.tmp` naming it, both
/// durable. A failure here changes nothing a reader or a restart sees (`CURRENT` still names the
/// previous version; open removes the leftovers), so the caller may report it and go on.
pub fn prepare_manifest(fs: &dyn Dir, db: &Path, m: &Manifest) -> Result<()> {
    let path = manifest_path(db, m.version);
    write_atomic(fs, &path, &m.encode())?;
    crate::dir::write_new(fs, &db.join("CURRENT.tmp"), &current_text(m.version))?;
    Ok(())
}

/// The bytes of `CURRENT` naming `v`: the decimal version, a space, and the CRC-32 of the decimal
/// text in 8 hex digits, then a newline. The checksum makes a flipped bit an error instead of a
/// silent switch to an older kept version.
pub fn current_text(v: ManifestVersion) -> Vec<u8> {
    let digits = v.0.to_string();
    format!("{digits} {:08x}\n", crc32(digits.as_bytes())).into_bytes()
}

/// The second half of [`commit_manifest`]: renames `CURRENT.tmp` over `CURRENT` and fsyncs the
/// directory. After a failure here the outcome on disk is unknown (the rename may be durable).
pub fn publish_manifest(fs: &dyn Dir, db: &Path) -> Result<()> {
    let current = db.join("CURRENT");
    fs.rename(&db.join("CURRENT.tmp"), &current)
        .map_err(|e| StorageError::io(&current, e))?;
    sync_dir(fs, db)
}

/// The current version named by `CURRENT`.
pub fn read_current(fs: &dyn Dir, db: &Path) -> Result<ManifestVersion> {
    let p = db.join("CURRENT");
    let text = match fs.read(&p) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StorageError::NotADatabase(db.to_path_buf()))
        }
        Err(e) => return Err(StorageError::io(&p, e)),
    };
    let bad = || StorageError::corrupt(&p, 0, format!("CURRENT holds {text:?}, not a version"));
    let (digits, sum) = match text.trim_end_matches('\n').split_once(' ') {
        Some((d, s)) => (d, Some(s)),
        // Written before the checksum (format 2 and older): the version alone.
        None => (text.trim(), None),
    };
    let v = digits.parse::<u64>().map_err(|_| bad())?;
    if let Some(sum) = sum {
        let want = u32::from_str_radix(sum, 16).map_err(|_| bad())?;
        if sum.len() != 8 || want != crc32(digits.as_bytes()) {
            return Err(StorageError::corrupt(
                &p,
                0,
                format!("CURRENT holds {text:?}: its checksum does not match the version"),
            ));
        }
    }
    Ok(ManifestVersion(v))
}

/// Reads and verifies manifest `version`.
pub fn read_manifest(fs: &dyn Dir, db: &Path, version: ManifestVersion) -> Result<Manifest> {
    let p = manifest_path(db, version);
    let bytes = crate::dir::read(fs, &p)?;
    let m = Manifest::decode(&p, &bytes)?;
    if m.version != version {
        return Err(StorageError::corrupt(
            &p,
            0,
            format!("file holds version {}", m.version.0),
        ));
    }
    Ok(m)
}

/// Versions of the manifest files present, ascending.
pub fn list_manifests(fs: &dyn Dir, db: &Path) -> Result<Vec<ManifestVersion>> {
    let dir = manifest_dir(db);
    let mut out = Vec::new();
    for name in crate::dir::list(fs, &dir)? {
        if let Some(v) = name.strip_suffix(".manifest").and_then(|s| s.parse().ok()) {
            out.push(ManifestVersion(v));
        }
    }
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn schema() -> TableSchema {
        TableSchema::new(
            "customer_id",
            vec![ColumnDef::new("stage1", ColumnType::Timestamp)],
        )
    }

    fn create(name: &str) -> CatalogOp {
        CatalogOp::Create {
            name: name.into(),
            schema: schema(),
            if_not_exists: false,
        }
    }

    #[test]
    fn ops_are_all_or_nothing() -> Result<()> {
        let m0 = Manifest::initial(KeyType::Varchar, 65536);
        let m1 = apply_ops(&m0, &[create("a"), create("b")])?;
        assert_eq!(m1.tables.len(), 2);
        let bad = apply_ops(
            &m1,
            &[
                CatalogOp::Drop {
                    name: "a".into(),
                    if_exists: false,
                },
                create("b"),
            ],
        );
        assert!(matches!(bad, Err(StorageError::TableExists(_))));
        let m2 = apply_ops(
            &m1,
            &[CatalogOp::Swap {
                a: "a".into(),
                b: "B".into(),
            }],
        )?;
        assert_eq!(m2.table("a").map(|t| t.id), m1.table("b").map(|t| t.id));
        let m3 = apply_ops(
            &m2,
            &[CatalogOp::Replace {
                target: "a".into(),
                source: "b".into(),
            }],
        )?;
        assert_eq!(m3.tables.len(), 1);
        assert_eq!(m3.table("a").map(|t| t.id), m1.table("a").map(|t| t.id));
        assert!(apply_ops(
            &m3,
            &[CatalogOp::Rename {
                from: "a".into(),
                to: "../x".into()
            }]
        )
        .is_err());
        let m4 = apply_ops(
            &m3,
            &[CatalogOp::CreateOrReplace {
                name: "a".into(),
                schema: schema(),
            }],
        )?;
        assert_ne!(m4.table("a").map(|t| t.id), m3.table("a").map(|t| t.id));
        Ok(())
    }

    #[test]
    fn encode_decode_and_corruption() -> Result<()> {
        let mut m = apply_ops(&Manifest::initial(KeyType::Bigint, 1 << 18), &[create("t")])?;
        if let Some(t) = m.tables.first_mut() {
            t.segments.push(SegmentMeta {
                id: SegmentId(7),
                partition: PartitionId(2),
                rows: 10,
                size_bytes: 99,
            });
        }
        let bytes = m.encode();
        assert_eq!(Manifest::decode(Path::new("m"), &bytes)?, m);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(
                Manifest::decode(Path::new("m"), &bad).is_err(),
                "flip at {i} unnoticed"
            );
        }
        Ok(())
    }
}
