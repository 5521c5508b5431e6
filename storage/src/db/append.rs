//! Appends: an Arrow batch checked against the table, its keys mapped to ordinals, written to the WAL
//! and acknowledged after the group commit.

use super::*;

impl Database {
    /// Appends the rows of `batch` to `table`. The batch holds the key column (named like the table's
    /// key column) and any subset of the value columns, by name. When this returns `Ok`, the rows are
    /// durable and visible to every snapshot taken afterwards. Returns the number of rows appended.
    pub fn append(&self, table: &str, batch: &RecordBatch) -> Result<usize> {
        let version = self.shared.current.load_full();
        let tv = version
            .table_by_name(table)
            .ok_or_else(|| StorageError::TableNotFound(table.to_string()))?
            .clone();
        let n = batch.num_rows();
        if n > APPEND_ROWS_MAX {
            return Err(StorageError::InvalidBatch {
                table: table.into(),
                reason: format!("{n} rows; at most {APPEND_ROWS_MAX} per append"),
            });
        }
        if n == 0 {
            resolve_batch(&tv, batch, version.manifest.key_type)?;
            return Ok(0);
        }
        let row_batch = to_row_batch(&self.shared, &tv, batch, version.manifest.key_type)?;
        if version.is_temporary(tv.id) {
            return self.append_temporary(&tv, row_batch, version.manifest.partition_rows);
        }
        let payload = encode_batch(&row_batch);
        let chunk = Arc::new(Chunk::from_batch(
            &row_batch,
            &tv.schema,
            version.manifest.partition_rows,
        ));
        // Kept only for the sums check (below, under the lock).
        let sums = sums::has_sum_columns(&tv.schema).then_some(row_batch);

        let mut st = lock(&self.shared.state);
        if let Some(p) = &st.poisoned {
            return Err(StorageError::WalPoisoned(p.clone()));
        }
        let Some(current) = st.version.tables.get(&tv.id) else {
            return Err(StorageError::TableNotFound(table.to_string()));
        };
        if let Some(rows) = &sums {
            let in_flight = st
                .pending
                .iter()
                .filter(|(_, t, _)| *t == tv.id)
                .map(|(_, _, c)| &**c);
            sums::check_append(current, in_flight, rows)?;
        }
        drop(sums);
        st.wal.append(&payload)?;
        st.wal_rows += n as u64;
        st.written_lsn += 1;
        let lsn = st.written_lsn;
        st.pending.push_back((lsn, tv.id, chunk));
        self.shared.wait_durable(st, lsn)?;
        Ok(n)
    }
}

impl Database {
    /// An append to a temporary table: no WAL, no fsync. The rows become in-memory segments at
    /// once (an ingest), folded with the table's rows by its merge rules like any append.
    fn append_temporary(
        &self,
        tv: &TableVersion,
        rows: RowBatch,
        partition_rows: u32,
    ) -> Result<usize> {
        let n = rows.ordinals.len();
        if sums::has_sum_columns(&tv.schema) {
            sums::check_append(tv, std::iter::empty(), &rows)?;
        }
        let chunk = Chunk::from_batch(&rows, &tv.schema, partition_rows);
        self.shared.ingest_with(
            &tv.name,
            Some((tv.id, tv.schema.columns.len())),
            &[],
            chunk.parts.into_iter().collect(),
        )?;
        Ok(n)
    }
}

/// Checks an appended batch against the table, maps its keys to ordinals (registering new keys)
/// and converts its value columns to the engine's representation.
pub(super) fn to_row_batch(
    shared: &Shared,
    tv: &TableVersion,
    batch: &RecordBatch,
    key_type: KeyType,
) -> Result<RowBatch> {
    let (key_col, columns) = resolve_batch(tv, batch, key_type)?;
    let ordinals = ordinals_of(shared, key_col, &tv.name)?;
    to_row_batch_with(tv, columns, ordinals)
}

/// [`to_row_batch`] of a batch's value columns (from [`resolve_batch`]) whose keys' ordinals are
/// known, one per row.
pub(super) fn to_row_batch_with(
    tv: &TableVersion,
    columns: ValueColumns,
    ordinals: Vec<u32>,
) -> Result<RowBatch> {
    let rows: Vec<usize> = (0..ordinals.len()).collect();
    let mut cols = Vec::with_capacity(columns.len());
    for (id, array) in columns {
        let def =
            tv.schema
                .columns
                .get(id.0 as usize)
                .ok_or_else(|| StorageError::InvalidBatch {
                    table: tv.name.clone(),
                    reason: "internal: column id".into(),
                })?;
        let (valid, values) = from_arrow(array.as_ref(), def.ty, &rows).ok_or_else(|| {
            StorageError::InvalidBatch {
                table: tv.name.clone(),
                reason: format!("column {} has Arrow type {}", def.name, array.data_type()),
            }
        })?;
        cols.push(BatchColumn {
            id,
            ty: def.ty,
            valid,
            values,
        });
    }
    Ok(RowBatch {
        table: tv.id,
        ordinals,
        columns: cols,
    })
}

impl Database {
    /// The ordinals of `keys` (a BIGINT or VARCHAR key array), registering the keys the dictionary
    /// lacks (made durable by the next commit or append that uses them). For readers that need
    /// ordinals for keys outside any table, such as a file read by SQL.
    pub fn register_keys(&self, keys: &dyn Array) -> Result<Vec<u32>> {
        if keys.null_count() > 0 {
            return Err(StorageError::InvalidBatch {
                table: String::new(),
                reason: "a key is NULL".into(),
            });
        }
        let mut dict = self.shared.keys.write().unwrap_or_else(|e| e.into_inner());
        insert_keys(&mut dict, keys, "")
    }
}

/// The value columns of an appended batch, by column id.
pub(super) type ValueColumns = Vec<(ColumnId, arrow_array::ArrayRef)>;

/// Finds the key column and the value columns of an appended batch, checking names, types and
/// duplicates.
pub(super) fn resolve_batch<'a>(
    tv: &TableVersion,
    batch: &'a RecordBatch,
    key_type: KeyType,
) -> Result<(&'a dyn Array, ValueColumns)> {
    let bad = |reason: String| StorageError::InvalidBatch {
        table: tv.name.clone(),
        reason,
    };
    let schema = batch.schema();
    if !schema
        .fields()
        .iter()
        .any(|f| f.name().eq_ignore_ascii_case(&tv.schema.key_name))
    {
        return Err(bad(format!(
            "the key column {} is missing",
            tv.schema.key_name
        )));
    }
    let mut key = None;
    let mut cols = Vec::new();
    let mut seen = HashSet::new();
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name();
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(bad(format!("column {name} appears twice")));
        }
        if name.eq_ignore_ascii_case(&tv.schema.key_name) {
            key = Some(array.as_ref());
            continue;
        }
        let (id, def) = tv
            .schema
            .column(name)
            .ok_or_else(|| StorageError::ColumnNotFound {
                table: tv.name.clone(),
                column: name.clone(),
            })?;
        let ok = matches!(array.data_type(), DataType::Null)
            || array.data_type() == &crate::values::arrow_type(def.ty)
            || matches!(
                (def.ty, array.data_type()),
                (
                    crate::schema::ColumnType::Timestamp,
                    DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, _)
                )
            )
            || matches!(
                (def.ty, array.data_type()),
                (
                    crate::schema::ColumnType::Varchar,
                    DataType::LargeUtf8 | DataType::Utf8View
                )
            );
        if !ok {
            return Err(bad(format!(
                "column {name} is {} but the batch has {}",
                def.ty.sql_name(),
                array.data_type()
            )));
        }
        cols.push((id, array.clone()));
    }
    let key =
        key.ok_or_else(|| bad(format!("the key column {} is missing", tv.schema.key_name)))?;
    check_keys(tv, key, key_type)?;
    Ok((key, cols))
}

/// Checks a batch's key array: the database's key type, no NULL.
pub(super) fn check_keys(tv: &TableVersion, key: &dyn Array, key_type: KeyType) -> Result<()> {
    let bad = |reason: String| StorageError::InvalidBatch {
        table: tv.name.clone(),
        reason,
    };
    let key_ok = match key_type {
        KeyType::Varchar => matches!(
            key.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ),
        KeyType::Bigint => key.data_type() == &DataType::Int64,
    };
    if !key_ok {
        return Err(bad(format!(
            "the key column must be {key_type:?}, the batch has {}",
            key.data_type()
        )));
    }
    if key.null_count() > 0 {
        return Err(StorageError::InvalidKey(format!(
            "the key column of an append to {} holds NULL",
            tv.name
        )));
    }
    Ok(())
}

/// Batches at least this long look their keys up on several threads; shorter ones on one.
const PARALLEL_LOOKUP_ROWS: usize = 4_096;

/// Keys sampled from a batch to guess whether most of its keys are new.
const NEW_KEYS_SAMPLE: usize = 64;

/// Whether more than half of [`NEW_KEYS_SAMPLE`] keys spread over the batch are not in `dict` (a
/// first load, not a delta of known customers).
fn mostly_new(dict: &KeyDict, col: &KeyCol<'_>, n: usize) -> bool {
    let step = (n / NEW_KEYS_SAMPLE).max(1);
    let sample = dict.lookup_batch(n.min(NEW_KEYS_SAMPLE), |i| col.key(i * step));
    sample.iter().filter(|o| o.is_none()).count() * 2 > sample.len()
}

/// A key column of a supported Arrow type.
enum KeyCol<'a> {
    Str(&'a StringArray),
    Large(&'a LargeStringArray),
    View(&'a StringViewArray),
    Int(&'a Int64Array),
}

impl<'a> KeyCol<'a> {
    fn new(array: &'a dyn Array, table: &str) -> Result<KeyCol<'a>> {
        let any = array.as_any();
        if let Some(a) = any.downcast_ref::<StringArray>() {
            Ok(KeyCol::Str(a))
        } else if let Some(a) = any.downcast_ref::<LargeStringArray>() {
            Ok(KeyCol::Large(a))
        } else if let Some(a) = any.downcast_ref::<StringViewArray>() {
            Ok(KeyCol::View(a))
        } else if let Some(a) = any.downcast_ref::<Int64Array>() {
            Ok(KeyCol::Int(a))
        } else {
            Err(StorageError::InvalidBatch {
                table: table.into(),
                reason: format!("unsupported key type {}", array.data_type()),
            })
        }
    }

    fn key(&self, i: usize) -> Key<'a> {
        match self {
            KeyCol::Str(a) => Key::Str(a.value(i)),
            KeyCol::Large(a) => Key::Str(a.value(i)),
            KeyCol::View(a) => Key::Str(a.value(i)),
            KeyCol::Int(a) => Key::Int(a.value(i)),
        }
    }
}

/// The ordinals of a batch's keys, registering new keys in row order. Keys already known are looked
/// up first under the read lock, on the worker pool for a long batch: a lookup mostly waits on memory
/// (the table slot, then the key's bytes), so threads overlap those waits. Only the keys not found
/// take the write lock. A long batch whose sampled keys are mostly new (a first load) skips the
/// lookups and takes the write lock at once: a miss costs as much as an insert.
pub(super) fn ordinals_of(shared: &Shared, array: &dyn Array, table: &str) -> Result<Vec<u32>> {
    let col = KeyCol::new(array, table)?;
    let n = array.len();
    let threads = crate::workers::threads().min(8);
    let found: Vec<Option<u32>> = {
        let dict = shared.keys.read().unwrap_or_else(|e| e.into_inner());
        if n >= PARALLEL_LOOKUP_ROWS && mostly_new(&dict, &col, n) {
            // Looking up keys that are not there costs as much as inserting them: go straight to
            // the write lock, one probe per key.
            drop(dict);
            let mut dict = shared.keys.write().unwrap_or_else(|e| e.into_inner());
            return dict.get_or_insert((0..n).map(|i| col.key(i)));
        }
        if n >= PARALLEL_LOOKUP_ROWS && threads > 1 {
            // Each task takes the read lock itself: a pool worker must never wait for this
            // thread, which waits for the pool (a writer queued on the lock would block new
            // readers, and the pool's workers could be those readers).
            drop(dict);
            let per = n.div_ceil(threads);
            let slices: Vec<(usize, usize)> = (0..threads)
                .map(|t| ((t * per).min(n), ((t + 1) * per).min(n)))
                .collect();
            // A slice whose lookups panicked comes back short: its keys take the write path.
            crate::workers::map(&slices, |&(start, end)| {
                let dict = shared.keys.read().unwrap_or_else(|e| e.into_inner());
                dict.lookup_batch(end - start, |i| col.key(start + i))
            })
            .into_iter()
            .flat_map(Result::unwrap_or_default)
            .collect()
        } else {
            dict.lookup_batch(n, |i| col.key(i))
        }
    };
    if found.len() == n && found.iter().all(Option::is_some) {
        return Ok(found.into_iter().flatten().collect());
    }
    let mut dict = shared.keys.write().unwrap_or_else(|e| e.into_inner());
    if found.len() != n {
        return dict.get_or_insert((0..n).map(|i| col.key(i)));
    }
    let missing: Vec<usize> = (0..n)
        .filter(|&i| found.get(i).is_some_and(Option::is_none))
        .collect();
    let mut new = dict
        .get_or_insert(missing.iter().map(|&i| col.key(i)))?
        .into_iter();
    Ok(found
        .into_iter()
        .map(|f| f.or_else(|| new.next()).unwrap_or_default())
        .collect())
}

pub(super) fn insert_keys(keys: &mut KeyDict, array: &dyn Array, table: &str) -> Result<Vec<u32>> {
    let any = array.as_any();
    let n = array.len();
    if let Some(a) = any.downcast_ref::<StringArray>() {
        keys.get_or_insert((0..n).map(|i| Key::Str(a.value(i))))
    } else if let Some(a) = any.downcast_ref::<LargeStringArray>() {
        keys.get_or_insert((0..n).map(|i| Key::Str(a.value(i))))
    } else if let Some(a) = any.downcast_ref::<StringViewArray>() {
        keys.get_or_insert((0..n).map(|i| Key::Str(a.value(i))))
    } else if let Some(a) = any.downcast_ref::<Int64Array>() {
        keys.get_or_insert((0..n).map(|i| Key::Int(a.value(i))))
    } else {
        Err(StorageError::InvalidBatch {
            table: table.into(),
            reason: format!("unsupported key type {}", array.data_type()),
        })
    }
}

pub(super) fn check_batch_schema(
    path: &Path,
    offset: u64,
    batch: &RowBatch,
    schema: &TableSchema,
) -> Result<()> {
    for c in &batch.columns {
        let ok = schema
            .columns
            .get(c.id.0 as usize)
            .is_some_and(|d| d.ty == c.ty)
            && c.valid.len() == batch.ordinals.len();
        if !ok {
            return Err(StorageError::corrupt(
                path,
                offset,
                format!(
                    "WAL record column {} does not fit table {}",
                    c.id.0, batch.table.0
                ),
            ));
        }
    }
    Ok(())
}
