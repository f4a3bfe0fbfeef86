package tsigauth

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// nsupdateMD5 is an UPDATE that BIND 9.18's nsupdate sent, signed with
// hmac-md5 by bob.members.example.com. (secret "c2VjcmV0c2VjcmV0c2VjcmV0MTI="):
// an SRV and an A record, the A's owner compressed to the SRV's target, as
// miekg/dns would not compress it.
const nsupdateMD5 = "66f9280000010000000200010 76d656d62657273076578616d706c6503636f6d0000060001" +
	"0b5f6175746f74756e6e656c045f756470046465736b03626f62076d656d62657273076578616d706c6503636f6d00" +
	"00210001 0000003c004200000000119422 4175746f54756e6e656c2d30322d31312d32322d46462d46452d33332d34342d3535" +
	"03626f62076d656d62657273076578616d706c6503636f6d00 c064000100010000003c0004c6336407" +
	"03626f62076d656d62657273076578616d706c6503636f6d0000fa00ff00000000003a08686d61632d6d6435077369672d616c67" +
	"03726567036 96e7400 00006b064ff1012c0010de7b479b86fee9012ccc0e1e3f242c3b66f900000000"

func TestCheckRawVerifiesTheBytesThatArrived(t *testing.T) {
	raw, err := hex.DecodeString(strings.ReplaceAll(nsupdateMD5, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(raw); err != nil {
		t.Fatal(err)
	}
	signedAt := time.Unix(int64(r.IsTsig().TimeSigned), 0)
	if res := CheckRaw(raw, r, keys, signedAt); res.Error != 0 || res.FormErr {
		t.Fatalf("nsupdate's MD5 signature over its own compression: %+v", res)
	}
	// Check, which can only pack the parsed message again, cannot.
	if res := Check(r, keys, signedAt); res.Error != dns.RcodeBadSig {
		t.Fatalf("Check on a message it cannot re-encode: %+v; if this passes, the README's MD5 caveat can go", res)
	}
	if res := CheckRaw(raw, r, keys, signedAt.Add(time.Hour)); res.Error != dns.RcodeBadTime {
		t.Fatalf("an hour later: %+v, want BADTIME", res)
	}
	raw[bytes.Index(raw, []byte{198, 51, 100, 7})+3] ^= 1 // the A record's address
	r.Unpack(raw)
	if res := CheckRaw(raw, r, keys, signedAt); res.Error != dns.RcodeBadSig {
		t.Fatalf("a flipped bit: %+v, want BADSIG", res)
	}
}
