//! Import of Tencent COS and Alibaba OSS origin rules.
