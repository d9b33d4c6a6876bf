pub struct E;
