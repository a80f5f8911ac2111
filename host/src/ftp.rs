//! FTP protocol (PI and DTP). Stub until the protocol engine lands.
