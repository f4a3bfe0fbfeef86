package boltstore

import (
	"encoding/binary"

	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/store/memzone"
)

// encodeTx lays out one transaction's log record: its sequence number, the
// serial after it, the records now at each name it set, and the ids it
// remembered. Replaying it sets the same names to the same records.
//
//	seq u64 ‖ serial u32 ‖ names u32 ‖ (keylen u8 ‖ key ‖ len u32 ‖ records)…
//	‖ ids u32 ‖ (signed i64 ‖ id [16])…
func encodeTx(seq uint64, serial uint32, order []*memzone.Touch, seen []memzone.SeenID) []byte {
	b := binary.BigEndian.AppendUint64(nil, seq)
	b = binary.BigEndian.AppendUint32(b, serial)
	b = binary.BigEndian.AppendUint32(b, uint32(len(order)))
	for _, tc := range order {
		v := tc.NewPacked
		b = append(b, byte(len(tc.Key)))
		b = append(b, tc.Key...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(seen)))
	for _, s := range seen {
		b = binary.BigEndian.AppendUint64(b, uint64(s.Signed))
		b = append(b, s.ID[:]...)
	}
	return b
}

// loggedTx is a decoded log record.
type loggedTx struct {
	seq    uint64
	serial uint32
	keys   []string
	packed [][]byte // checked to decode
	seen   []memzone.SeenID
}

// decodeTx reads what encodeTx wrote; memzone.ErrCorrupt for anything else.
func decodeTx(b []byte) (loggedTx, error) {
	var l loggedTx
	if len(b) < 16 {
		return l, memzone.ErrCorrupt
	}
	l.seq = binary.BigEndian.Uint64(b)
	l.serial = binary.BigEndian.Uint32(b[8:])
	n := binary.BigEndian.Uint32(b[12:])
	b = b[16:]
	for range n {
		if len(b) < 1 || len(b) < 1+int(b[0])+4 {
			return l, memzone.ErrCorrupt
		}
		key := string(b[1 : 1+int(b[0])])
		b = b[1+len(key):]
		vlen := int(binary.BigEndian.Uint32(b))
		if len(b) < 4+vlen {
			return l, memzone.ErrCorrupt
		}
		v := b[4 : 4+vlen]
		if _, err := memzone.DecodeRecords(v); err != nil {
			return l, err
		}
		if _, err := store.KeyName([]byte(key)); err != nil {
			return l, memzone.ErrCorrupt
		}
		l.keys = append(l.keys, key)
		l.packed = append(l.packed, v)
		b = b[4+vlen:]
	}
	if len(b) < 4 {
		return l, memzone.ErrCorrupt
	}
	n = binary.BigEndian.Uint32(b)
	b = b[4:]
	if uint64(len(b)) != uint64(n)*(8+memzone.IDLen) {
		return l, memzone.ErrCorrupt
	}
	for range n {
		var s memzone.SeenID
		s.Signed = int64(binary.BigEndian.Uint64(b))
		copy(s.ID[:], b[8:8+memzone.IDLen])
		l.seen = append(l.seen, s)
		b = b[8+memzone.IDLen:]
	}
	return l, nil
}
