package kernel

// NftTableFOwner is NFT_TABLE_F_OWNER in
// include/uapi/linux/netfilter/nf_tables.h (Linux >= 5.12): the table
// belongs to the netlink socket that made it, which alone may change it,
// and the kernel removes it when that socket closes.
const NftTableFOwner = 0x2
