package keyfile

import (
	"bytes"
	"fmt"
	"strings"
)

// tokKind is the kind of a lexical token in the named.conf subset we read.
type tokKind int

const (
	tokEOF    tokKind = iota
	tokWord           // unquoted string
	tokString         // quoted string, quotes removed
	tokLBrace         // {
	tokRBrace         // }
	tokSemi           // ;
)

// token is one lexical token and the line it starts on.
type token struct {
	kind tokKind
	text string // for tokWord and tokString
	line int
}

// isValue reports whether t can stand for a value (a name, an algorithm, a
// secret). named.conf accepts quoted and unquoted strings alike there.
func (t token) isValue() bool { return t.kind == tokWord || t.kind == tokString }

// String describes t for error messages.
func (t token) String() string {
	switch t.kind {
	case tokEOF:
		return "end of file"
	case tokWord:
		return fmt.Sprintf("%q", t.text)
	case tokString:
		return fmt.Sprintf("quoted string %q", t.text)
	case tokLBrace:
		return "'{'"
	case tokRBrace:
		return "'}'"
	case tokSemi:
		return "';'"
	}
	return "unknown token"
}

// lexer splits a key file into tokens. It follows the rules of BIND's
// isc_lex as configured for named.conf closely enough that a file it
// accepts means the same thing to BIND: the three comment styles, quoted
// strings that may not span lines, and '{', '}' and ';' as punctuation.
type lexer struct {
	file string // for error messages
	src  []byte
	pos  int
	line int // line of src[pos]
	// lastLine is the line of the last byte consumed. End of file is
	// reported there rather than on the empty "line" after a final
	// newline, which no editor would show.
	lastLine int
}

func newLexer(file string, src []byte) *lexer {
	return &lexer{file: file, src: src, line: 1, lastLine: 1}
}

// errorf returns a *ParseError for line.
func (lx *lexer) errorf(line int, format string, args ...any) error {
	return &ParseError{File: lx.file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// advance consumes one byte, keeping the line count.
func (lx *lexer) advance() {
	lx.lastLine = lx.line
	if lx.src[lx.pos] == '\n' {
		lx.line++
	}
	lx.pos++
}

// peek returns the byte off bytes ahead, or 0 past the end.
func (lx *lexer) peek(off int) byte {
	if lx.pos+off < len(lx.src) {
		return lx.src[lx.pos+off]
	}
	return 0
}

func isSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '\v', '\f':
		return true
	}
	return false
}

// isDelim reports whether c ends an unquoted word.
func isDelim(c byte) bool {
	return isSpace(c) || c == '{' || c == '}' || c == ';' || c == '"'
}

// isControl reports whether c is a control byte that is not white space.
// Such bytes have no business in a key file; most likely the file is not
// a key file at all, and saying so early gives a better message.
func isControl(c byte) bool {
	return (c < 0x20 && !isSpace(c)) || c == 0x7f
}

// skip moves past white space and comments.
func (lx *lexer) skip() error {
	for lx.pos < len(lx.src) {
		c := lx.src[lx.pos]
		switch {
		case isSpace(c):
			lx.advance()
		case c == '#', c == '/' && lx.peek(1) == '/':
			for lx.pos < len(lx.src) && lx.src[lx.pos] != '\n' {
				lx.advance()
			}
		case c == '/' && lx.peek(1) == '*':
			// Block comments do not nest, as in C and in BIND.
			start := lx.line
			lx.advance()
			lx.advance()
			for {
				if lx.pos >= len(lx.src) {
					return lx.errorf(start, "unterminated /* comment")
				}
				if lx.src[lx.pos] == '*' && lx.peek(1) == '/' {
					lx.advance()
					lx.advance()
					break
				}
				lx.advance()
			}
		default:
			return nil
		}
	}
	return nil
}

// next returns the next token.
func (lx *lexer) next() (token, error) {
	if err := lx.skip(); err != nil {
		return token{}, err
	}
	if lx.pos >= len(lx.src) {
		return token{kind: tokEOF, line: lx.lastLine}, nil
	}
	line := lx.line
	c := lx.src[lx.pos]
	switch {
	case c == '{':
		lx.advance()
		return token{kind: tokLBrace, line: line}, nil
	case c == '}':
		lx.advance()
		return token{kind: tokRBrace, line: line}, nil
	case c == ';':
		lx.advance()
		return token{kind: tokSemi, line: line}, nil
	case c == '"':
		return lx.quoted()
	case isControl(c):
		return token{}, lx.errorf(line, "unexpected control character 0x%02x", c)
	}
	start := lx.pos
	for lx.pos < len(lx.src) && !isDelim(lx.src[lx.pos]) && !isControl(lx.src[lx.pos]) {
		lx.advance()
	}
	word := string(lx.src[start:lx.pos])
	// Whether a comment may start in the middle of an unquoted word is
	// a detail of BIND's lexer we do not want to depend on: "abc//def"
	// could be one word or a word and a comment. Refuse to guess, so that
	// we never read a file differently from BIND. Base64 secrets contain
	// '/', which is why tsig-keygen always quotes them.
	for _, s := range []string{"#", "//", "/*"} {
		if strings.Contains(word, s) {
			return token{}, lx.errorf(line, "unquoted %q contains %q; put it in double quotes", word, s)
		}
	}
	return token{kind: tokWord, text: word, line: line}, nil
}

// quoted reads a quoted string. As in BIND, a backslash only escapes a
// double quote (and is then dropped); any other backslash is kept as is,
// so that domain-name escapes such as "\." pass through to the name
// parser. A newline before the closing quote is an error, which also
// stops a missing quote from swallowing the rest of the file.
func (lx *lexer) quoted() (token, error) {
	line := lx.line
	lx.advance() // opening quote
	var b bytes.Buffer
	escaped := false
	for {
		if lx.pos >= len(lx.src) || lx.src[lx.pos] == '\n' {
			return token{}, lx.errorf(line, "unterminated quoted string")
		}
		c := lx.src[lx.pos]
		lx.advance()
		switch {
		case c == '"' && escaped:
			// Overwrite the backslash that escaped the quote.
			b.Truncate(b.Len() - 1)
			b.WriteByte('"')
			escaped = false
		case c == '"':
			return token{kind: tokString, text: b.String(), line: line}, nil
		default:
			escaped = c == '\\' && !escaped
			b.WriteByte(c)
		}
	}
}
