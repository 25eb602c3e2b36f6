// Package image owns the on-disk checkpoint: a directory of image files in
// CRIU's format, so that CRIU's own tools (crit) can read what cryo dumps.
//
// Every image but pages-N.img is a magic header followed by records, each a
// little-endian u32 length and a protobuf message, of one of CRIU's types
// or cryo's own, all in package pb. The package writes and parses
// that framing itself, knows which file name, magic and message types belong
// to each image kind, and stores memory as a pagemap-PID.img index plus raw
// pages-N.img data. What the messages say is the business of the dump and
// restore pipelines.
//
// Parsing works on any io.Reader; Dir adds file naming, permissions and
// durability on top.
package image
