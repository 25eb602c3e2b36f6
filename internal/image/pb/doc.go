// Package pb holds the messages of CRIU's image files, and of cryo's own,
// as plain Go structs with their protobuf encoding (proto2: optional and
// required scalars are pointers, nil when unset). The code is generated
// by ./gen from go-criu's descriptors of CRIU's .proto files, keeping
// go-criu's Go names, so the types read as go-criu's do; but cryo does
// not link the protobuf runtime, whose registration of every image
// message cost each cryo start about 5 ms and 3 MiB.
package pb

//go:generate go run ./gen -o .
